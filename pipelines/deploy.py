"""The deployment history: an append-only log in the artifact store, the source of truth.

Entries live under ``records/deployments/<model>/<seq>.json`` and are never rewritten.
Replaying them gives the serving state: the ``stable`` model, an optional ``canary``
and the stack of earlier stable models that rollbacks walk back through. After every
append the resolved state is written to ``records/deployments/<model>/head.json``, which
the serving service polls (one small read). A file lock serializes deploys, promotions,
aborts and rollbacks, and each action checks the state it was decided on, so two of them
racing cannot both apply.

The history is the only thing that must be right: the head, the edge bundles and the MLflow
aliases are derived from it, and ``pipelines.repair`` rebuilds whichever of them a killed
process left behind. ``aliases.json`` beside the head records which aliases were last set
(and on which registry), so a check for a needed alias sync costs one small read.

This module imports nothing heavy: ``make rollback`` goes through it and must stay fast.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from filelock import FileLock, Timeout

from pipelines.store import ArtifactStore

VARIANTS = ("fp32", "int8", "fp16")

Action = Literal["deploy", "promote", "abort", "rollback", "reject"]
EntryState = Literal["stable", "canary", "aborted", "rolled_back", "rejected"]


class DeployError(RuntimeError):
    """An action that does not apply to the current deployment state (says why)."""


class UnreadableHistory(DeployError):
    """A history entry that cannot be read as one (names the file)."""


@dataclass(frozen=True)
class VariantFile:
    """One ONNX variant of a deployed model: where it is and what its bytes hash to."""

    content_hash: str
    sha256: str
    bytes: int

    def sha256_mismatch(self, data: bytes) -> str | None:
        """The sha256 of ``data`` when it is not the one recorded here, else ``None``."""
        digest = hashlib.sha256(data).hexdigest()
        return None if digest == self.sha256 else digest

    def to_json(self) -> dict[str, Any]:
        return {"content_hash": self.content_hash, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariantFile:
        return cls(content_hash=data["content_hash"], sha256=data["sha256"],
                   bytes=int(data["bytes"]))


@dataclass(frozen=True)
class ModelInputs:
    """The raw columns a deployed model takes (its preprocessing is inside the graph)."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInputs:
        return cls(numeric=tuple(data.get("numeric", ())),
                   categorical=tuple(data.get("categorical", ())))


@dataclass(frozen=True)
class DeployedModel:
    """A model as the deployment history records it: lineage and per-variant files.

    ``to_json``/``from_json`` are the history's on-disk form (``model``, ``to`` of an entry;
    ``stable``, ``canary``, ``previous`` of the head); ``preprocess`` is left out of it when
    unknown.
    """

    version: int | None
    trained_weights: str
    quantized_weights: str
    model_card: str
    inputs: ModelInputs = ModelInputs()
    variants: dict[str, VariantFile] = field(default_factory=dict)
    preprocess: str | None = None  # content hash of the preprocessing parameters
    # The variant in the edge bundle (the smallest published one); ``None`` in entries
    # written before variants could be dropped, whose bundles hold int8.
    edge_variant: str | None = None
    # The OpenTelemetry trace id (32 hex digits) of the run that trained the weights, when
    # that run was traced: request spans link to it.
    training_trace: str | None = None
    # Content hash of the version's audit pack (signatures, ML-BOM, lineage: pipelines.audit);
    # ``None`` in entries written before packs were, whose models serve unsigned.
    audit_pack: str | None = None

    def artifacts(self) -> set[str]:
        """Every content hash the model needs (what garbage collection keeps)."""
        hashes = {self.trained_weights, self.quantized_weights, self.model_card,
                  self.preprocess, self.audit_pack} | {
                      v.content_hash for v in self.variants.values()}
        return {h for h in hashes if h}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version, "trained_weights": self.trained_weights,
            "quantized_weights": self.quantized_weights, "model_card": self.model_card,
            "inputs": self.inputs.to_json(),
            "variants": {name: v.to_json() for name, v in self.variants.items()}}
        if self.preprocess is not None:
            out["preprocess"] = self.preprocess
        if self.edge_variant is not None:
            out["edge_variant"] = self.edge_variant
        if self.training_trace is not None:
            out["training_trace"] = self.training_trace
        if self.audit_pack is not None:
            out["audit_pack"] = self.audit_pack
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeployedModel:
        return cls(version=data.get("version"), trained_weights=data["trained_weights"],
                   quantized_weights=data["quantized_weights"], model_card=data["model_card"],
                   inputs=ModelInputs.from_json(data.get("inputs") or {}),
                   variants={name: VariantFile.from_json(v)
                             for name, v in (data.get("variants") or {}).items()},
                   preprocess=data.get("preprocess"), edge_variant=data.get("edge_variant"),
                   training_trace=data.get("training_trace"), audit_pack=data.get("audit_pack"))


def _model_json(model: DeployedModel | None) -> dict[str, Any] | None:
    return None if model is None else model.to_json()


def _model(data: dict[str, Any] | None) -> DeployedModel | None:
    return None if data is None else DeployedModel.from_json(data)


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of the append-only history (``records/deployments/<model>/<seq>.json``)."""

    seq: int
    time: float
    actor: str | None
    action: Action
    state: EntryState
    model: DeployedModel | None
    reason: str = ""
    to: DeployedModel | None = None  # a rollback of the stable model: the model it went to

    def to_json(self) -> dict[str, Any]:
        out = {"seq": self.seq, "time": self.time, "actor": self.actor, "action": self.action,
               "state": self.state, "model": _model_json(self.model), "reason": self.reason}
        if self.to is not None:
            out["to"] = self.to.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryEntry:
        return cls(seq=int(data["seq"]), time=float(data["time"]), actor=data.get("actor"),
                   action=data["action"], state=data["state"], model=_model(data.get("model")),
                   reason=data.get("reason") or "", to=_model(data.get("to")))


@dataclass(frozen=True)
class DeploymentHead:
    """The resolved state as the service polls it (``head.json``)."""

    seq: int
    stable: DeployedModel | None
    canary: DeployedModel | None
    previous: DeployedModel | None
    stack: tuple[int | None, ...]  # versions of the stable models, oldest first

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "stable": _model_json(self.stable),
                "canary": _model_json(self.canary), "previous": _model_json(self.previous),
                "stack": list(self.stack)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentHead:
        return cls(seq=int(data["seq"]), stable=_model(data.get("stable")),
                   canary=_model(data.get("canary")), previous=_model(data.get("previous")),
                   stack=tuple(data.get("stack") or ()))


@dataclass
class DeploymentState:
    """What is deployed, resolved from the history."""

    seq: int = 0
    stable: DeployedModel | None = None
    canary: DeployedModel | None = None
    stack: list[DeployedModel] = field(default_factory=list)  # stable models, oldest first

    @property
    def previous(self) -> DeployedModel | None:
        return self.stack[-2] if len(self.stack) > 1 else None

    def head(self) -> DeploymentHead:
        return DeploymentHead(seq=self.seq, stable=self.stable, canary=self.canary,
                              previous=self.previous,
                              stack=tuple(m.version for m in self.stack))

    def to_json(self) -> dict[str, Any]:
        """The head's on-disk form."""
        return self.head().to_json()


def _prefix(model_name: str) -> str:
    return f"deployments/{model_name}"


def entry_names(store: ArtifactStore, model_name: str) -> list[str]:
    """The record names of every history entry, oldest first."""
    return [n for n in store.list_records(_prefix(model_name)) if n.rsplit("/", 1)[-1].isdigit()]


def entries(store: ArtifactStore, model_name: str) -> list[HistoryEntry]:
    """Every history entry, oldest first.

    Raises:
        UnreadableHistory: an entry is not a history entry (naming its file).
    """
    out = []
    for name in entry_names(store, model_name):
        try:
            out.append(HistoryEntry.from_json(store.read_record(name)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UnreadableHistory(
                f"records/{name}.json: deployment history entry of {model_name} is unreadable "
                f"({type(exc).__name__}: {exc}); restore it from a backup or a lakeFS commit "
                "(make verify lists every such problem)") from None
    return out


def replay(log: list[HistoryEntry]) -> DeploymentState:
    state = DeploymentState()
    for entry in log:
        action, model = entry.action, entry.model
        if action == "deploy" and entry.state == "stable":
            state.stack.append(model)
            state.canary = None
        elif action == "deploy":
            state.canary = model
        elif action == "promote":
            state.stack.append(model)
            state.canary = None
        elif action in ("abort", "rollback") and entry.state == "aborted":
            state.canary = None
        elif action == "rollback":
            state.stack.pop()
        state.seq = entry.seq
    state.stable = state.stack[-1] if state.stack else None
    return state


def current(store: ArtifactStore, model_name: str) -> DeploymentState:
    """The resolved state (from the history itself, not the head cache)."""
    return replay(entries(store, model_name))


def head(store: ArtifactStore, model_name: str) -> dict[str, Any] | None:
    """The head record as stored, untyped (``None`` before the first deploy).

    For comparing it byte for byte with the history (:func:`head_in_line`); readers of
    what is deployed use :func:`read_head`.
    """
    return store.read_record(f"{_prefix(model_name)}/head")


def read_head(store: ArtifactStore, model_name: str) -> DeploymentHead | None:
    """The cached resolved state the service polls (``None`` before the first deploy)."""
    record = head(store, model_name)
    return None if record is None else DeploymentHead.from_json(record)


def head_in_line(store: ArtifactStore, model_name: str, state: DeploymentState) -> bool:
    """Whether the stored head is exactly what ``state`` (replayed from the history) gives."""
    return head(store, model_name) == state.to_json()


@contextlib.contextmanager
def locked(store: ArtifactStore, model_name: str, timeout_s: float = 30.0) -> Iterator[None]:
    """Hold the model's deployment lock (an exclusive ``flock`` through ``filelock``)."""
    path = store.lock_path(f"deployments-{model_name}")
    lock = FileLock(path, timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise DeployError(
            f"another deploy or rollback of {model_name} holds {path} for more "
            f"than {timeout_s:g} s; retry when it has finished") from None
    try:
        yield
    finally:
        lock.release()


def _append(store: ArtifactStore, model_name: str, state: DeploymentState, *, action: Action,
            new_state: EntryState, model: DeployedModel, reason: str, actor: str | None,
            to: DeployedModel | None = None) -> DeploymentState:
    """Append one entry (caller holds the lock) and refresh the head."""
    seq = state.seq + 1
    entry = HistoryEntry(seq=seq, time=time.time(), actor=actor or _actor(), action=action,
                         state=new_state, model=model, reason=reason, to=to)
    try:
        store.create_record(f"{_prefix(model_name)}/{seq:08d}", entry.to_json())
    except FileExistsError:
        raise DeployError(
            f"deployment entry {seq} of {model_name} was written by another machine at the "
            "same moment; nothing was overwritten: run the command again") from None
    return write_head(store, model_name, current(store, model_name))


def write_head(store: ArtifactStore, model_name: str, state: DeploymentState) -> DeploymentState:
    """Write the head for ``state`` (caller holds the lock); returns the state written.

    With a remote store, another machine may append between our replay and our head
    write; whoever writes last checks again, so the head ends at the newest entry.
    """
    while True:
        store.write_record(f"{_prefix(model_name)}/head", state.to_json())
        latest = current(store, model_name)
        if latest.seq == state.seq:
            return state
        state = latest


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def deploy(store: ArtifactStore, model_name: str, model: DeployedModel, *,
           canary_share: float, actor: str | None = None) -> tuple[str, DeploymentState]:
    """Deploy a model that passed the gate: as canary beside a stable model, else stable.

    Returns ``("deployed", state)``, or ``("unchanged", state)`` when the model is already
    the stable or canary one. A new canary replaces a live one (which is aborted).
    """
    with locked(store, model_name):
        state = current(store, model_name)
        live = [m for m in (state.stable, state.canary) if m]
        if any(m.trained_weights == model.trained_weights for m in live):
            return "unchanged", state
        as_canary = state.stable is not None and canary_share > 0
        if as_canary and state.canary:
            state = _append(store, model_name, state, action="abort", new_state="aborted",
                            model=state.canary, reason=f"replaced by version {model.version}",
                            actor=actor)
        state = _append(store, model_name, state, action="deploy",
                        new_state="canary" if as_canary else "stable", model=model,
                        reason=f"passed the deploy gate (card {model.model_card[:19]}…)",
                        actor=actor)
        return "deployed", state


def reject(store: ArtifactStore, model_name: str, model: DeployedModel, reason: str,
           actor: str | None = None) -> DeploymentState:
    """Record that a candidate was not deployed, and why; the serving state is unchanged."""
    with locked(store, model_name):
        state = current(store, model_name)
        last = entries(store, model_name)[-1:] if state.seq else []
        if last and last[0].action == "reject" and last[0].model is not None and (
                last[0].model.model_card == model.model_card):
            return state
        return _append(store, model_name, state, action="reject", new_state="rejected",
                       model=model, reason=reason, actor=actor)


def promote(store: ArtifactStore, model_name: str, *, expect_seq: int | None = None,
            reason: str = "promoted by hand", actor: str | None = None) -> DeploymentState:
    """Make the canary the stable model.

    ``expect_seq`` applies the promotion only if the history is still at that entry (the
    service passes the state its canary verdict was made on).
    """
    return _decide_canary(store, model_name, "promote", "stable", expect_seq, reason, actor)


def abort(store: ArtifactStore, model_name: str, *, expect_seq: int | None = None,
          reason: str = "aborted by hand", actor: str | None = None) -> DeploymentState:
    """Withdraw the canary; the stable model takes all traffic again."""
    return _decide_canary(store, model_name, "abort", "aborted", expect_seq, reason, actor)


def _decide_canary(store: ArtifactStore, model_name: str, action: Action, new_state: EntryState,
                   expect_seq: int | None, reason: str, actor: str | None) -> DeploymentState:
    with locked(store, model_name):
        state = current(store, model_name)
        _expect(state, expect_seq)
        if state.canary is None:
            raise DeployError(f"{model_name} has no canary to {action} "
                              f"(stable: {version_label(state.stable)})")
        return _append(store, model_name, state, action=action, new_state=new_state,
                       model=state.canary, reason=reason, actor=actor)


def rollback(store: ArtifactStore, model_name: str, *, reason: str = "rolled back by hand",
             actor: str | None = None) -> DeploymentState:
    """Undo the newest change: withdraw a live canary, else go back one stable model.

    A second rollback walks further back through the earlier stable models.
    """
    with locked(store, model_name):
        state = current(store, model_name)
        if state.canary is not None:
            return _append(store, model_name, state, action="rollback", new_state="aborted",
                           model=state.canary, reason=reason, actor=actor)
        if state.previous is None:
            raise DeployError(
                f"nothing to roll back to: {model_name} has "
                + ("no deployed model" if state.stable is None
                   else f"only version {version_label(state.stable)} in its history"))
        return _append(store, model_name, state, action="rollback", new_state="rolled_back",
                       model=state.stable, to=state.previous, reason=reason, actor=actor)


def _expect(state: DeploymentState, expect_seq: int | None) -> None:
    if expect_seq is not None and state.seq != expect_seq:
        raise DeployError(f"the deployment changed (entry {state.seq}, expected {expect_seq}); "
                          "not applied")


def version_label(model: DeployedModel | None) -> str:
    return "none" if model is None else str(model.version)


def alias_targets(state: DeploymentState) -> dict[str, int | None]:
    """MLflow aliases that mirror the state: ``champion`` (stable) and ``previous``."""
    return {"champion": state.stable.version if state.stable else None,
            "previous": state.previous.version if state.previous else None}


def _registry_id(tracking_uri: str) -> str:
    """Which registry an alias record is about (not its URL: that may hold a password)."""
    return hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]


def aliases_in_sync(store: ArtifactStore, model_name: str, tracking_uri: str,
                    state: DeploymentState) -> bool:
    """Whether the aliases last set on this registry are the ones ``state`` calls for.

    One small read, no MLflow import: the nightly no-op run stays cheap.
    """
    record = store.read_record(f"{_prefix(model_name)}/aliases")
    return bool(record) and record.get("registry") == _registry_id(tracking_uri) and (
        record.get("aliases") == alias_targets(state))


def sync_aliases(store: ArtifactStore, tracking_uri: str, model_name: str) -> dict[str, Any]:
    """Point the MLflow aliases at what the history says (imports MLflow: seconds).

    Not under the deployment lock (a slow registry must not hold up a rollback): after
    setting them it reads the history again and sets them again if it moved meanwhile,
    and only then records what it set (``aliases.json``).
    """
    from pipelines.tracking import set_aliases

    state = current(store, model_name)
    while True:
        targets = alias_targets(state)
        set_aliases(tracking_uri, model_name, targets)
        latest = current(store, model_name)
        if alias_targets(latest) == targets:
            break
        state = latest
    store.write_record(f"{_prefix(model_name)}/aliases", {
        "seq": latest.seq, "registry": _registry_id(tracking_uri), "aliases": targets})
    return targets
