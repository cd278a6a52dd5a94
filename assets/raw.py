"""raw_source (observed) and raw_data (snapshot into the store)."""

import dagster as dg

from assets.memo import materialize_stage
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


@dg.asset(deps=["raw_source"], group_name="data",
          description="Byte-exact snapshot of the source in the content-addressed store.")
def raw_data(context: dg.AssetExecutionContext, spec: DatasetSpecResource,
             store: ArtifactStoreResource):
    from pipelines.stages.raw import snapshot_source

    dataset = spec.get()
    try:
        path = local_source_path(dataset.source.path)
    except InputError as exc:
        raise dg.Failure(description=str(exc)) from exc
    source_hash, _ = store.stat_cache().file_hash(path)
    yield from materialize_stage(
        context, asset="raw_data", store=store.get(), modules=("pipelines.stages.raw",),
        config={"format": dataset.source.resolved_format}, inputs={"source": source_hash},
        compute=lambda key: snapshot_source(dataset, store.get()),
    )
