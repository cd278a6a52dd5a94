"""OpenLineage run events for the stages of a Dagster run (the ``openlineage-python`` client).

A stage that computes (a cache miss) emits a START and a COMPLETE event: the job is
``<model>.<stage>`` in the ``OPENLINEAGE_NAMESPACE`` namespace (default ``tideline``), the
run's parent is the Dagster run, the inputs and output are datasets named
``<model>/<input>`` in the artifact store's namespace, and each dataset's version facet is
its content hash. The events go

- to the transport the client's own configuration names when there is one
  (``OPENLINEAGE_URL`` for HTTP, ``OPENLINEAGE_CONFIG`` / ``openlineage.yml`` /
  ``OPENLINEAGE__*`` variables, ``OPENLINEAGE_DISABLED=true``);
- else to a file: one event per line in ``$TIDELINE_HOME/lineage/events.jsonl``; past
  ``MAX_EVENTS_BYTES`` it is renamed ``events-<UTC time>.jsonl`` and a new one begun, and
  only the newest ``KEEP_ROTATED`` renamed files are kept (the store keeps every stage's
  events for the audit packs whatever happens to the file);

and into the artifact store beside the output (content-addressed, then a pointer under
``keys/<model>/lineage/<stage>/<output hash>``), with the versions of the libraries that
shaped it, so that the audit pack of a model version gathers its lineage from the store
alone.

The store's copy is written before the stage's memo entry (a kill in between leaves a miss,
not a hit without lineage); the events are emitted after it.

A cache hit emits nothing and imports nothing: the client takes about 0.3 s to import, more
than a whole hit stage, and a hit produces no new dataset version (the miss that made the
artifact has its events). Emitting never fails a stage: a transport that cannot be reached
is logged as a warning.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.hashing import canonical_json
from pipelines.store import ArtifactNotFound, ArtifactStore

LOG = logging.getLogger("tideline.lineage")
PRODUCER = "urn:tideline:pipelines.lineage"  # who wrote the events (a URI, as the spec asks)
NAMESPACE_ENV = "OPENLINEAGE_NAMESPACE"
EVENTS_FILE = "events.jsonl"
MAX_EVENTS_BYTES = 64 * 1024 * 1024  # the events file is rotated past this size
KEEP_ROTATED = 5  # rotated events files kept beside it


@dataclass(frozen=True)
class StageLineage:
    """What the store keeps of one computed stage: its events and the environment it ran in."""

    model: str
    stage: str
    run_id: str  # the Dagster run
    recipe_key: str
    inputs: dict[str, str]
    output: str
    environment: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "stage": self.stage, "run_id": self.run_id,
                "recipe_key": self.recipe_key, "inputs": self.inputs, "output": self.output,
                "environment": self.environment, "events": self.events}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageLineage:
        return cls(model=data["model"], stage=data["stage"], run_id=data["run_id"],
                   recipe_key=data["recipe_key"], inputs=dict(data["inputs"]),
                   output=data["output"], environment=dict(data.get("environment") or {}),
                   events=list(data.get("events") or []))


def _table(model: str, stage: str) -> str:
    return f"{model}/lineage/{stage}"


def dataset_namespace(store: ArtifactStore) -> str:
    """The artifact store as an OpenLineage dataset namespace (a URI)."""
    return store.root if "://" in store.root else Path(store.root).resolve().as_uri()


def stage_run_id(run_id: str, stage: str) -> str:
    """The stage's OpenLineage run id: a UUID derived from the Dagster run and the stage."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dagster-run:{run_id}/{stage}"))


def _parent_run_id(run_id: str) -> str:
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dagster-run:{run_id}"))


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def build_events(store: ArtifactStore, *, run_id: str, model: str, stage: str,
                 inputs: dict[str, str], output: str, started: float,
                 ended: float) -> list[Any]:
    """The START and COMPLETE events of one stage run (openlineage ``RunEvent`` objects)."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        job_type_job,
        parent_run,
    )

    namespace = os.environ.get(NAMESPACE_ENV) or "tideline"
    data = dataset_namespace(store)

    def version(content_hash: str) -> dict[str, Any]:
        return {"version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=content_hash)}

    # Inputs that are not artifacts ("champion": "none") are settings, not datasets.
    ins = [InputDataset(namespace=data, name=f"{model}/{name}", facets=version(h))
           for name, h in sorted(inputs.items()) if ":" in h]
    outs = [OutputDataset(namespace=data, name=f"{model}/{stage}", facets=version(output))]
    run = Run(runId=stage_run_id(run_id, stage), facets={"parent": parent_run.ParentRunFacet(
        run=parent_run.Run(runId=_parent_run_id(run_id)),
        job=parent_run.Job(namespace=namespace, name=model))})
    job = Job(namespace=namespace, name=f"{model}.{stage}", facets={
        "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DAGSTER",
                                                jobType="ASSET")})
    return [RunEvent(eventType=RunState.START, eventTime=_iso(started), run=run, job=job,
                     inputs=ins, producer=PRODUCER),
            RunEvent(eventType=RunState.COMPLETE, eventTime=_iso(ended), run=run, job=job,
                     inputs=ins, outputs=outs, producer=PRODUCER)]


def _configured() -> bool:
    """Whether the environment configures the OpenLineage client itself."""
    names = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED")
    if any(os.environ.get(n) for n in names) or any(
            k.startswith("OPENLINEAGE__") for k in os.environ):
        return True
    return any(Path(p).is_file() for p in (Path.cwd() / "openlineage.yml",
                                           Path.home() / ".openlineage" / "openlineage.yml"))


@lru_cache(maxsize=4)
def client(events_file: str, configured: bool) -> Any:
    """The OpenLineage client: its own configuration, else a file transport to ``events_file``."""
    from openlineage.client import OpenLineageClient

    if configured:
        return OpenLineageClient()
    from openlineage.client.transport.file import FileConfig, FileTransport

    Path(events_file).parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=events_file,
                                                                append=True)))


def events_file(state: Path) -> Path:
    return state / "lineage" / EVENTS_FILE


def record_stage_run(store: ArtifactStore, *, run_id: str, model: str, stage: str,
                     recipe_key: str, inputs: dict[str, str], output: str, seconds: float,
                     modules: Iterable[str] = (),
                     compute: Callable[..., Any] | None = None) -> list[Any]:
    """Store the lineage of a stage that has just computed ``output``; returns its events.

    Called on a cache miss after the output is stored and before its memo entry is written,
    so a run killed in between leaves no memo entry without its lineage: the next run
    computes the stage again and records it. Emitting the events (:func:`emit`) comes after
    the memo entry. Never raises: what fails is logged as a warning and gives no events.

    Args:
        store: The artifact store the output is in.
        run_id: The Dagster run id.
        model: The model (dataset spec name).
        stage: The stage (asset) name.
        recipe_key: The stage's recipe key.
        inputs: Content hashes of its inputs, by input name.
        output: The content hash of its output.
        seconds: How long the stage took.
        modules: The stage's ``pipelines`` modules (for the library versions it used).
        compute: The stage's compute function (likewise).
    """
    ended = time.time()
    try:
        events = build_events(store, run_id=run_id, model=model, stage=stage, inputs=inputs,
                              output=output, started=ended - seconds, ended=ended)
        record_stage(store, StageLineage(
            model=model, stage=stage, run_id=run_id, recipe_key=recipe_key, inputs=inputs,
            output=output, environment=_environment(tuple(modules), compute),
            events=[_to_dict(e) for e in events]))
    except Exception:  # lineage is a record of the run, never a reason to fail it
        LOG.warning("%s %s: could not record its OpenLineage events", model, stage,
                    exc_info=True)
        return []
    return events


def emit(model: str, stage: str, events: list[Any]) -> None:
    """Send a stage's recorded events to the configured transport (never raises)."""
    if not events:
        return
    from pipelines.paths import state_dir

    try:
        configured, path = _configured(), events_file(state_dir())
        if not configured:
            rotate(path)
        emitter = client(str(path), configured)
        for event in events:
            emitter.emit(event)
    except Exception as exc:
        LOG.warning("%s %s: OpenLineage events not emitted (%s: %s); they are kept in the "
                    "store for the audit pack", model, stage, type(exc).__name__, exc)


def rotate(path: Path, max_bytes: int | None = None, keep: int | None = None) -> None:
    """Start a new events file once ``path`` has grown past ``max_bytes``.

    The full file is renamed ``events-<UTC time>.jsonl`` (a rename: a kill leaves one name
    or the other, never a half file) and all but the newest ``keep`` renamed files are
    deleted (by default `MAX_EVENTS_BYTES` and `KEEP_ROTATED`). The file transport opens
    the file for each event, so it follows on its own.
    """
    max_bytes = MAX_EVENTS_BYTES if max_bytes is None else max_bytes
    keep = KEEP_ROTATED if keep is None else keep
    try:
        if path.stat().st_size < max_bytes:
            return
    except FileNotFoundError:
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    try:
        os.replace(path, path.with_name(f"{path.stem}-{stamp}{path.suffix}"))
    except FileNotFoundError:  # another run's process rotated it first
        return
    rotated = sorted(path.parent.glob(f"{path.stem}-*{path.suffix}"))
    for old in rotated[:-keep] if keep else rotated:
        old.unlink(missing_ok=True)
    LOG.info("OpenLineage events file rotated: %s began anew (kept %d older files)",
             path, min(len(rotated), keep))


def stage_done(store: ArtifactStore, *, run_id: str, model: str, stage: str, recipe_key: str,
               inputs: dict[str, str], output: str, cache: str, seconds: float,
               modules: Iterable[str] = (), compute: Callable[..., Any] | None = None) -> None:
    """Record then emit the lineage of a computed stage (nothing on a cache hit).

    :func:`record_stage_run` and :func:`emit` in one call, for callers that keep no memo
    entry of their own; the arguments are theirs, ``cache`` says whether it computed.
    """
    if cache != "miss":
        return
    emit(model, stage, record_stage_run(
        store, run_id=run_id, model=model, stage=stage, recipe_key=recipe_key, inputs=inputs,
        output=output, seconds=seconds, modules=modules, compute=compute))


def _to_dict(event: Any) -> dict[str, Any]:
    from openlineage.client.serde import Serde

    return json.loads(Serde.to_json(event))


def _environment(modules: tuple[str, ...], compute: Callable[..., Any] | None) -> dict[str, Any]:
    from pipelines.recipe import code_fingerprint, environment

    if not modules and compute is None:
        return environment()
    return environment(code_fingerprint(*modules,
                                        functions=(compute,) if compute is not None else ()))


def record_stage(store: ArtifactStore, lineage: StageLineage) -> str:
    """Store a stage's lineage (content first, then its pointer); returns its content hash."""
    content_hash = store.put_bytes(canonical_json(lineage.to_json()))
    store.record(_table(lineage.model, lineage.stage), lineage.output,
                 {"content_hash": content_hash})
    return content_hash


def stage_lineage(store: ArtifactStore, model: str, stage: str,
                  output: str) -> tuple[str, StageLineage] | None:
    """The stored lineage of the stage run that produced ``output`` (and its content hash)."""
    record = store.lookup(_table(model, stage), output)
    if record is None:
        return None
    try:
        data = json.loads(store.get_bytes(record["content_hash"]))
        return record["content_hash"], StageLineage.from_json(data)
    except (ArtifactNotFound, ValueError, KeyError, TypeError):
        return None
