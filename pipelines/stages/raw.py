"""raw_data: snapshot the source into the store, hashing the bytes as they are copied."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.artifacts import StageResult
from pipelines.ingest import local_source_path
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore

if TYPE_CHECKING:
    import pandas as pd


def snapshot_source(spec: DatasetSpec, store: ArtifactStore,
                    labelled: pd.DataFrame | None = None,
                    lakefs_source: tuple[Any, Any] | None = None) -> StageResult:
    """The source's bytes, plus labelled production rows when the spec takes them in.

    Args:
        spec: The dataset spec (its source and format).
        store: Where the snapshot goes.
        labelled: Labelled production rows to add, or None.
        lakefs_source: ``(client, SourceVersion)`` for a ``lakefs://`` source: the object
            is read at the version's commit and checked against lakeFS's checksum.
    """
    extra: dict[str, Any] = {}
    if lakefs_source is not None:
        import tempfile

        from pipelines.lakefs import copy_source

        client, version = lakefs_source
        with tempfile.TemporaryFile() as spool:
            size = copy_source(client, version, spool)
            spool.seek(0)
            content_hash = store.put_stream(spool)
        source = version.pinned_uri
        extra = {"lakefs_commit": version.commit_id, "lakefs_checksum": version.checksum}
    else:
        path = local_source_path(spec.source.path)
        with open(path, "rb") as f:
            content_hash = store.put_stream(f)
        size, source = path.stat().st_size, str(path)
    info = {"format": spec.source.resolved_format, "bytes": size}
    frames = {}
    if labelled is not None and len(labelled):
        frames["labelled"] = labelled
        info["labelled_rows"] = len(labelled)
    return StageResult(
        kind="raw_data",
        stored={"source": content_hash}, frames=frames, info=info,
        metadata={"source": source, "bytes": size, "format": spec.source.resolved_format,
                  "labelled_production_rows": info.get("labelled_rows", 0), **extra},
    )
