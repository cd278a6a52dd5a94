"""raw_data: snapshot the source into the store, hashing the bytes as they are copied."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.artifacts import StageResult
from pipelines.ingest import local_source_path
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore

if TYPE_CHECKING:
    import pandas as pd


def snapshot_source(spec: DatasetSpec, store: ArtifactStore,
                    labelled: pd.DataFrame | None = None) -> StageResult:
    """The source's bytes, plus labelled production rows when the spec takes them in."""
    path = local_source_path(spec.source.path)
    with open(path, "rb") as f:
        content_hash = store.put_stream(f)
    size = path.stat().st_size
    info = {"format": spec.source.resolved_format, "bytes": size}
    frames = {}
    if labelled is not None and len(labelled):
        frames["labelled"] = labelled
        info["labelled_rows"] = len(labelled)
    return StageResult(
        kind="raw_data",
        stored={"source": content_hash}, frames=frames, info=info,
        metadata={"source": str(path), "bytes": size, "format": spec.source.resolved_format,
                  "labelled_production_rows": info.get("labelled_rows", 0)},
    )
