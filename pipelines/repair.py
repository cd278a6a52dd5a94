"""Bring what is derived from the deployment history back in line with it.

The append-only history (``pipelines.deploy``) is the source of truth. A process killed
half-way through a deployment can leave behind a missing or stale ``head.json`` (the
service would keep serving the old model), an edge bundle folder with a temp file and no
model, or MLflow aliases that still name the old champion. ``repair`` finds each of these
and rebuilds it from the history: it runs in the deployment step (also when the model is
already deployed), in ``python -m cli.deployctl repair`` / ``status --repair`` and when the
serving service starts.

When nothing is wrong it writes nothing, takes no lock and imports no MLflow: a few small
reads and one sha256 of each edge file, so the nightly no-op run stays cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines import deploy
from pipelines.signing import SignatureError
from pipelines.store import ArtifactNotFound, ArtifactStore
from pipelines.targets import (
    check_edge,
    edge_files,
    edge_folder,
    edge_variant,
    publish_edge,
    remove_edge_files,
)


@dataclass
class EdgeRepair:
    """One edge bundle folder that was written again or cleaned."""

    version: int | None
    role: str
    folder: str
    problems: list[str] = field(default_factory=list)  # what was wrong; empty: only temps
    temp_files_removed: list[str] = field(default_factory=list)


@dataclass
class RepairReport:
    """What ``repair`` found out of line with the history, and put right."""

    model_name: str
    seq: int = 0
    head: str | None = None  # why the head was rewritten ("missing", "at entry 3")
    edge: list[EdgeRepair] = field(default_factory=list)
    aliases: dict[str, int | None] | None = None  # the aliases set, when they were re-synced
    problems: list[str] = field(default_factory=list)  # what could not be repaired, and why

    @property
    def changed(self) -> bool:
        return bool(self.head or self.edge or self.aliases is not None)

    def lines(self) -> list[str]:
        """One line per repair (and per problem left), for logs and the command line."""
        out = []
        if self.head:
            out.append(f"{self.model_name}: head.json rebuilt from the history at entry "
                       f"{self.seq} (it was {self.head})")
        for e in self.edge:
            what = "; ".join(e.problems) if e.problems else "bundle intact"
            extra = (f"; {len(e.temp_files_removed)} leftover temp file(s) removed"
                     if e.temp_files_removed else "")
            action = "re-published" if e.problems else "cleaned"
            out.append(f"{self.model_name}: edge bundle v{e.version} ({e.role}) {action} at "
                       f"{e.folder} ({what}){extra}")
        if self.aliases is not None:
            names = ", ".join(f"{k}={'none' if v is None else v}"
                              for k, v in self.aliases.items())
            out.append(f"{self.model_name}: MLflow aliases re-synced with the history ({names})")
        out += [f"{self.model_name}: {p}" for p in self.problems]
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repair(store: ArtifactStore, model_name: str, *, edge_target: str | None = None,
           tracking_uri: str | None = None, log: Any = None) -> RepairReport:
    """Rebuild the head, edge bundles (stable and canary) and MLflow aliases from the history.

    Args:
        store: the artifact store holding the history.
        model_name: the model (the dataset spec's ``name``).
        edge_target: the spec's ``deployment.edge.target``; ``None`` leaves edge bundles be
            (the serving service, which does not publish them).
        tracking_uri: the MLflow registry; ``None`` leaves the aliases be. MLflow is
            imported only when the aliases need setting.
        log: called with each line of the report when something was repaired.

    Returns:
        What was repaired; ``report.changed`` is false when everything was in line.
    """
    state = deploy.current(store, model_name)
    report = RepairReport(model_name, seq=state.seq)
    if state.seq == 0:
        return report
    if not deploy.head_in_line(store, model_name, state):
        with deploy.locked(store, model_name):
            state = deploy.current(store, model_name)  # decided again under the lock
            found = deploy.head(store, model_name)
            if found != state.to_json():
                state = deploy.write_head(store, model_name, state)
                report.head = "missing" if found is None else f"at entry {found.get('seq')}"
        report.seq = state.seq
    if edge_target is not None:
        _repair_edge(store, model_name, state, edge_target, report)
    if tracking_uri is not None and not deploy.aliases_in_sync(store, model_name, tracking_uri,
                                                               state):
        report.aliases = deploy.sync_aliases(store, tracking_uri, model_name)
    if log is not None:
        for line in report.lines():
            log(line)
    return report


def _repair_edge(store: ArtifactStore, model_name: str, state: deploy.DeploymentState,
                 target: str, report: RepairReport) -> None:
    live = [("stable", state.stable), ("canary", state.canary)]
    for role, model in [(r, m) for r, m in live if m]:
        version = model.version
        try:
            files = edge_files(store, model_name, model)
        except ArtifactNotFound:
            report.problems.append(
                f"edge bundle v{version} ({role}) cannot be re-published: its "
                f"{edge_variant(model)} model "
                f"{model.variants[edge_variant(model)].content_hash} is missing from the store; "
                "make rollback, or make reproduce and redeploy")
            continue
        except SignatureError as exc:  # its audit pack is unreadable or lacks the signature
            report.problems.append(f"edge bundle v{version} ({role}) cannot be re-published: "
                                   f"{exc}")
            continue
        problems, temps = check_edge(target, model_name, version, files)
        if not problems and not temps:
            continue
        # Under the lock: no deployment of this model is half-way through writing a temp
        # file that we would remove, and two repairs do not publish the same folder.
        with deploy.locked(store, model_name):
            problems, temps = check_edge(target, model_name, version, files)
            if not problems and not temps:
                continue
            remove_edge_files(target, temps)
            try:
                folder = (publish_edge(target, model_name, version, files) if problems else
                          edge_folder(target, model_name, version))
            except SignatureError as exc:  # never publish a bundle a device would refuse
                report.problems.append(f"edge bundle v{version} ({role}) not re-published: "
                                       f"{exc}")
                continue
        report.edge.append(EdgeRepair(version, role, folder, problems, temps))
