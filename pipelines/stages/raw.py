"""raw_data: snapshot the source into the store, hashing the bytes as they are copied."""

from __future__ import annotations

from pipelines.artifacts import StageResult
from pipelines.ingest import local_source_path
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore


def snapshot_source(spec: DatasetSpec, store: ArtifactStore) -> StageResult:
    path = local_source_path(spec.source.path)
    with open(path, "rb") as f:
        content_hash = store.put_stream(f)
    size = path.stat().st_size
    return StageResult(
        kind="raw_data",
        stored={"source": content_hash},
        info={"format": spec.source.resolved_format, "bytes": size},
        metadata={"source": str(path), "bytes": size, "format": spec.source.resolved_format},
    )
