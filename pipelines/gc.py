"""Garbage collection of the artifact store: delete what nothing needs any more.

Kept (the roots, and every file their manifests name):
- the artifacts of the last N materializations of each asset (the caller lists them);
- every model in every deployment history (weights, variants, card, audit pack), so any
  rollback and any edge bundle can still be rebuilt and ``make audit`` still checks it;
- anything pinned (``records/pins.json``);
- the stored lineage (``pipelines.lineage``) of every artifact kept, and its pointer.

Raw and validated data of a deployed version are not roots: the ML-BOM records their
hashes, and ``make audit`` reports them as not retained once they are gone.

Everything else under ``objects/`` older than a grace period is deleted (the grace period
protects objects a running materialization has written but not yet recorded), and memo
entries whose content is gone are removed, so they become plain cache misses. Temp files
that cut-off writes left anywhere in the store go once they are older than the grace period.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipelines.store import ArtifactStore, object_hash

PINS = "pins"


@dataclass
class Plan:
    keep: set[str] = field(default_factory=set)
    delete: list[str] = field(default_factory=list)  # object paths
    delete_bytes: int = 0
    stale_keys: list[str] = field(default_factory=list)  # memo entry paths
    temp: list[str] = field(default_factory=list)  # temp files of cut-off writes
    young: int = 0  # unreachable but inside the grace period


def pinned(store: ArtifactStore) -> set[str]:
    return set((store.read_record(PINS) or {}).get("hashes", []))


def pin(store: ArtifactStore, content_hash: str) -> None:
    if not store.has(content_hash):
        raise KeyError(f"{content_hash} is not in the store")
    store.write_record(PINS, {"hashes": sorted(pinned(store) | {content_hash})})


def deployed_roots(store: ArtifactStore) -> set[str]:
    """Every artifact named by any entry of any deployment history."""
    from pipelines import deploy

    roots: set[str] = set()
    for model_name in store.record_folders("deployments"):
        for entry in deploy.entries(store, model_name):
            for model in (entry.model, entry.to):
                if model is not None:
                    roots |= model.artifacts()
    return roots


def closure(store: ArtifactStore, roots: Iterable[str]) -> set[str]:
    """The roots and every file their manifests name (manifests are small JSON objects)."""
    keep: set[str] = set()
    for root in roots:
        if root in keep or not store.has(root):
            continue
        keep.add(root)
        try:
            manifest = json.loads(store.get_bytes(root))
        except (ValueError, UnicodeDecodeError):
            continue  # a plain file, not a manifest
        if isinstance(manifest, dict) and {"kind", "files"} <= set(manifest):
            keep |= set(manifest["files"].values())
    return keep


def _memo_records(store: ArtifactStore) -> dict[str, dict]:
    records = {}
    for path in store.memo_files():
        try:
            record = json.loads(store.fs.cat_file(path))
        except (ValueError, FileNotFoundError):
            continue
        if isinstance(record, dict):
            records[path] = record
    return records


def lineage_kept(records: dict[str, dict], keep: set[str]) -> set[str]:
    """The lineage objects of kept artifacts (pointers ``keys/<model>/lineage/<stage>/<out>``)."""
    digests = {h.split(":", 1)[-1] for h in keep}
    found = set()
    for path, record in records.items():
        parts = path.rsplit("/", 3)
        if (len(parts) == 4 and parts[1] == "lineage" and parts[3].endswith(".json")
                and parts[3][:-len(".json")] in digests and record.get("content_hash")):
            found.add(record["content_hash"])
    return found


def plan(store: ArtifactStore, roots: Iterable[str], grace_s: float = 3600.0) -> Plan:
    """What a sweep would delete, keeping ``roots`` and what is always kept."""
    result = Plan(keep=closure(store, set(roots) | pinned(store) | deployed_roots(store)))
    records = _memo_records(store)
    result.keep |= lineage_kept(records, result.keep)
    now = time.time()
    # A temp file inside the grace period may belong to a write still in progress.
    result.temp = old_temp_files(store, grace_s, now)
    for path, content_hash, info in store.object_files():
        if content_hash is None or content_hash in result.keep:
            continue
        if now - _mtime(info) < grace_s:
            result.young += 1
            continue
        result.delete.append(path)
        result.delete_bytes += int(info.get("size", 0))
    gone = {object_hash(path.rsplit("/", 1)[-1]) for path in result.delete}
    for path, record in records.items():
        if record.get("content_hash") in gone:
            result.stale_keys.append(path)
    return result


def old_temp_files(store: ArtifactStore, grace_s: float, now: float | None = None) -> list[str]:
    """Temp files of cut-off writes older than the grace period.

    Younger ones may belong to writes still in progress.
    """
    now = time.time() if now is None else now
    return [path for path, info in store.temp_files() if now - _mtime(info) >= grace_s]


def _mtime(info: dict) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def sweep(store: ArtifactStore, result: Plan) -> None:
    """Delete what a plan lists: memo entries first, so no entry ever points at nothing."""
    for path in result.stale_keys:
        store.remove(path)
    for path in [*result.delete, *result.temp]:
        store.remove(path)


def collect(store: ArtifactStore, roots: Iterable[str], *, grace_s: float, dry_run: bool,
            log: Callable[[str], None] = lambda line: None) -> Plan:
    """Plan a sweep keeping ``roots`` (and what is always kept), say what goes, and sweep.

    ``roots`` are the content hashes of the recent materializations (``make gc`` and the
    ``gc_job`` read them from the Dagster instance). With ``dry_run`` nothing is deleted and
    every path that would go is logged.
    """
    result = plan(store, roots, grace_s=grace_s)
    verb = "would delete" if dry_run else "deleting"
    log(f"gc: keeping {len(result.keep)} objects; {verb} {len(result.delete)} objects "
        f"({result.delete_bytes / 1e6:.1f} MB), {len(result.stale_keys)} memo entries and "
        f"{len(result.temp)} temp files of cut-off writes; "
        f"{result.young} unreferenced objects are younger than the grace period")
    if dry_run:
        for path in [*result.delete, *result.temp]:
            log(f"  {path}")
    else:
        sweep(store, result)
    return result
