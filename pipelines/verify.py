"""Check a whole artifact store: every pointer leads to complete content, nothing half-written.

``make verify`` runs this. Each problem names the path, the rule it breaks and what to
do. Checked:

- memo entries (``keys/``) are readable and name objects that are present, and every
  file a manifest lists is present;
- every object hashes to its name: ``b3:`` objects by their bytes, ``f3:`` frames by their
  logical content (read back from Parquet);
- deployment histories: every entry readable and numbered in order, every deployed
  model's files present with the sha256 the history recorded and, with an audit pack, its
  signature and signed provenance verifying against the trusted keys (as the service
  checks them), and the head the service polls equal to the replayed history;
- temp files that a cut-off write left behind (harmless, but `make gc` should clear them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelines.gc import old_temp_files
from pipelines.hashing import FRAME_PREFIX, hash_stream, hash_table
from pipelines.store import ArtifactStore

if TYPE_CHECKING:
    from pipelines.deploy import DeployedModel


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the store."""

    path: str
    rule: str
    remedy: str

    def line(self) -> str:
        return f"{self.path}: {self.rule}; {self.remedy}"


@dataclass
class Report:
    """What a verification looked at and what it found."""

    objects: int = 0
    memo_entries: int = 0
    history_entries: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_memo(store: ArtifactStore, report: Report) -> None:
    for path in store.memo_files():
        try:
            record = json.loads(store.fs.cat_file(path))
            content_hash = record["content_hash"]
        except FileNotFoundError:  # removed by a gc running meanwhile: nothing to check
            continue
        except (ValueError, KeyError, TypeError):
            report.memo_entries += 1
            report.problems.append(Problem(path, "memo entry is not a readable result record",
                                           "delete it (the stage recomputes on its next run)"))
            continue
        report.memo_entries += 1
        if not store.has(content_hash):
            report.problems.append(Problem(
                path, f"memo entry points at {content_hash}, which is not in the store",
                "make gc removes the entry (the stage then recomputes)"))
            continue
        _check_manifest_files(store, content_hash, path, report)


def _check_manifest_files(store: ArtifactStore, content_hash: str, where: str,
                          report: Report) -> None:
    try:
        manifest = json.loads(store.get_bytes(content_hash))
    except (ValueError, UnicodeDecodeError, KeyError):  # not a manifest, or gc took it
        return
    if not (isinstance(manifest, dict) and {"kind", "files"} <= set(manifest)):
        return
    for name, file_hash in manifest["files"].items():
        if not store.has(file_hash):
            report.problems.append(Problem(
                where, f"artifact {content_hash} lists {name} = {file_hash}, which is missing",
                "rerun the stage after make gc removes the entry"))


def _check_objects(store: ArtifactStore, report: Report) -> None:
    for path, content_hash, _ in store.object_files():
        if content_hash is None:
            continue
        try:
            rehashed = _rehash(store, path, content_hash)
        except FileNotFoundError:  # removed by a gc running meanwhile
            continue
        report.objects += 1
        if rehashed != content_hash:
            report.problems.append(Problem(
                path, "content does not hash to its name (corrupted or truncated)",
                "delete it; make gc then drops the memo entries that name it and the stage "
                "recomputes (a deployed model: make reproduce)"))


def _rehash(store: ArtifactStore, path: str, content_hash: str) -> str | None:
    """The hash an object's content gives, computed the way its name says."""
    if not content_hash.startswith(FRAME_PREFIX):
        with store.fs.open(path, "rb") as f:  # streamed: raw snapshots may be large
            rehashed = hash_stream(f)
        if rehashed == content_hash:
            return rehashed
        # A frame written before frames had a prefix of their own: named by its logical
        # hash under b3:. It is sound if its logical hash is its name.
        frame = _frame_hash(store, path)
        return content_hash if frame and frame.split(":")[1] == content_hash.split(":")[1] \
            else rehashed
    return _frame_hash(store, path)


def _frame_hash(store: ArtifactStore, path: str) -> str | None:
    import pyarrow.parquet as pq

    with store.fs.open(path, "rb") as f:
        if f.read(4) != b"PAR1":
            return None
        f.seek(0)
        try:
            # The table as stored, not through pandas: a column written as text with no
            # value, or as nullable integers, would come back as another type.
            return hash_table(pq.read_table(f))
        except Exception:  # any reader error means the bytes are not the frame named
            return None


def _check_history(store: ArtifactStore, report: Report) -> None:
    from pipelines import deploy

    for model_name in store.record_folders("deployments"):
        log: list[deploy.HistoryEntry] | None = []
        for number, name in enumerate(deploy.entry_names(store, model_name), start=1):
            report.history_entries += 1
            try:
                entry = deploy.HistoryEntry.from_json(store.read_record(name))
                assert entry.seq == number
            except (ValueError, KeyError, TypeError, AttributeError, AssertionError):
                report.problems.append(Problem(
                    f"records/{name}.json",
                    f"deployment history entry {number} of {model_name} is unreadable or out "
                    "of order", "restore it from a backup or a lakeFS commit; the history is "
                    "the source of truth and is never rewritten by Tideline"))
                log = None
                continue
            if log is not None:
                log.append(entry)
        if log is None:
            continue
        state = deploy.replay(log)
        for role, model in (("stable", state.stable), ("canary", state.canary)):
            if model:
                _check_model(store, model_name, role, model, report)
        if log and not deploy.head_in_line(store, model_name, state):
            report.problems.append(Problem(
                f"records/deployments/{model_name}/head.json",
                f"head does not match the history (entry {state.seq})",
                "make deploy-status REPAIR=1 rebuilds it"))


def _check_model(store: ArtifactStore, model_name: str, role: str, model: DeployedModel,
                 report: Report) -> None:
    for variant, info in model.variants.items():
        where = f"{model_name} v{model.version} ({role}) {variant}"
        try:
            data = store.get_bytes(info.content_hash)
        except KeyError:
            report.problems.append(Problem(where, f"model file {info.content_hash} is missing",
                                           "make rollback, or make reproduce and redeploy"))
            continue
        if info.sha256_mismatch(data) is not None:
            report.problems.append(Problem(where, "model file does not match its recorded sha256",
                                           "make rollback, or make reproduce and redeploy"))
        elif model.audit_pack is not None:
            _check_signature(store, model, variant, data, where, report)


def _check_signature(store: ArtifactStore, model: DeployedModel, variant: str, data: bytes,
                     where: str, report: Report) -> None:
    """The file's signature and the pack's provenance, as the service checks them."""
    from pipelines.audit import check_model
    from pipelines.paths import state_dir
    from pipelines.signing import SignatureError

    try:
        check_model(store, model, variant, data, state_dir())
    except SignatureError as exc:
        report.problems.append(Problem(where, str(exc), f"make audit VERSION={model.version} "
                                       "says more; make rollback, or redeploy to sign it"))


def verify_store(store: ArtifactStore, grace_s: float = 3600.0) -> Report:
    """Check the whole store; the report lists every problem found."""
    report = Report()
    _check_objects(store, report)
    _check_memo(store, report)
    _check_history(store, report)
    for path in old_temp_files(store, grace_s):
        report.problems.append(Problem(path, "temp file left by a cut-off write",
                                       "make gc removes it"))
    return report
