"""raw_source: the observed source file."""

import dagster as dg

from pipelines.ingest import InputError, local_source_path
from resources.store import ArtifactStoreResource, DatasetSpecResource


@dg.observable_source_asset(
    name="raw_source", group_name="data",
    description="The dataset spec's source file; its data version is its content hash, "
                "cached by (path, size, mtime, inode) so an unchanged file is never re-read.",
)
def raw_source(context, spec: DatasetSpecResource,
               store: ArtifactStoreResource) -> dg.ObserveResult:
    try:
        path = local_source_path(spec.get().source.path)
    except InputError as exc:
        raise dg.Failure(description=str(exc)) from exc
    content_hash, cached = store.stat_cache().file_hash(path)
    return dg.ObserveResult(
        data_version=dg.DataVersion(content_hash),
        metadata={"path": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size,
                  "content_hash": content_hash, "stat_cache": "hit" if cached else "miss"},
    )
