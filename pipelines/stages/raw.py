"""raw_data: snapshot the source into the store, hashing the bytes as they are copied."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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
        extra = {"lakefs_commit": version.commit_id, "lakefs_checksum": version.checksum,
                 "lakefs_ref": version.location.ref}
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


@dataclass
class SourceInputs:
    """The source's version (and labelled production rows' version) before any data is read.

    A local file's hash is stat-cached; a ``lakefs://`` source is resolved once to a commit,
    so the snapshot reads the object at that commit whatever the branch does meanwhile.
    """

    spec: DatasetSpec
    source_hash: str
    labels: str | None
    production_root: Path
    stat_cache: Any
    lakefs: tuple[Any, Any] | None = None

    @classmethod
    def find(cls, spec: DatasetSpec, stat_cache: Any, production_root: Path,
             lakefs_client: Any) -> SourceInputs:
        """Resolve the source.

        Args:
            spec: The model's dataset spec.
            stat_cache: The file-stat cache of content hashes.
            production_root: The model's production store (labelled rows, when taken in).
            lakefs_client: Called for a ``lakefs://`` source; returns the SDK client.

        Raises:
            InputError: a local source that is missing or unusable (one line).
            LakeFSError: a ``lakefs://`` source that does not resolve.
        """
        from pipelines.ingest import table_version

        version = table_version(spec.source.path, stat_cache, lakefs_client)
        labels = None
        if spec.monitoring.include_labelled_rows:
            from pipelines.production import labels_version

            labels = labels_version(production_root, stat_cache)
        return cls(spec, version.content_hash, labels, production_root, stat_cache,
                   version.lakefs)

    @property
    def inputs(self) -> dict[str, str]:
        """The raw_data stage's recipe inputs."""
        return {"source": self.source_hash} | ({"labelled": self.labels} if self.labels else {})

    def snapshot(self, store: ArtifactStore) -> StageResult:
        from pipelines.production import labelled_training_rows

        rows = (labelled_training_rows(self.production_root, self.stat_cache, self.spec)
                if self.labels else None)
        return snapshot_source(self.spec, store, rows, lakefs_source=self.lakefs)
