"""raw_data and validated_features, materialized together in one step.

A snapshot is published as ``raw_data`` only when it validates, so bad input never
becomes the latest raw data: the rejected bytes stay in the store (nothing is lost) and
the error names their hash. Both assets keep their own memo entries.
"""

import dagster as dg

from assets.memo import materialize_stage
from pipelines.ingest import InputError, local_source_path
from pipelines.spec import DatasetSpec
from resources.store import (
    ArtifactStoreResource,
    DatasetSpecResource,
    LakeFSResource,
    ProductionResource,
)


def _snapshot(dataset, store, production, with_labels: bool, lakefs_source=None):
    from pipelines.stages.raw import snapshot_source

    labelled = None
    if with_labels:
        from pipelines.production import labelled_predictions, training_rows

        joined = labelled_predictions(production.path(), production.stat_cache())
        labelled = training_rows(joined, dataset) if len(joined) else None
    return snapshot_source(dataset, store, labelled, lakefs_source=lakefs_source)


def _labels_version(dataset, production) -> str | None:
    """Content hash of label files and the prediction log, when labelled rows are taken in."""
    from pipelines.production import LABEL_GLOBS, fingerprint, scan

    if not dataset.monitoring.include_labelled_rows:
        return None
    root = production.path()
    labels = scan(root, production.stat_cache(), LABEL_GLOBS)
    if not labels:
        return None
    logs = scan(root, production.stat_cache(), ("predictions/*/*.parquet",))
    return fingerprint(labels + logs, root)


def _features(dataset, store, raw_hash: str):
    # Imported on a miss only: the cache-hit path loads no heavy library.
    from pipelines.stages.features import build_features

    return build_features(dataset, store, store.get_manifest(raw_hash))


def build_ingest_assets(spec: DatasetSpec) -> dg.AssetsDefinition:
    """The two assets, with validation checks built from the spec when definitions load."""
    from pipelines.validation import check_names

    checks = [dg.AssetCheckSpec(name, asset="validated_features", description=desc,
                                blocking=True) for name, desc in check_names(spec)]

    @dg.multi_asset(
        outs={
            "raw_data": dg.AssetOut(
                group_name="data",
                description="Byte-exact snapshot of the source in the content-addressed store."),
            "validated_features": dg.AssetOut(
                group_name="features",
                description="Rows that pass the spec's Great Expectations suite, typed, "
                            "labelled and split; failing rows are quarantined with reasons."),
        },
        deps=["raw_source"],
        internal_asset_deps={"raw_data": {dg.AssetKey("raw_source")},
                             "validated_features": {dg.AssetKey("raw_data")}},
        check_specs=checks, can_subset=False, name="ingest",
    )
    def ingest(context: dg.AssetExecutionContext, spec: DatasetSpecResource,
               store: ArtifactStoreResource, production: ProductionResource,
               lakefs: LakeFSResource):
        dataset, st = spec.get(), store.get()
        from pipelines.lakefs import is_lakefs

        lakefs_source = None
        if is_lakefs(dataset.source.path):
            # Resolved once: the snapshot reads the object at this commit, whatever the
            # branch does meanwhile; an untouched object keeps its recipe key.
            client = lakefs.client()
            version = lakefs.source_version(dataset.source.path, client)
            lakefs_source, source_hash = (client, version), version.content_key
            context.log.info(f"source {dataset.source.path} is {version.pinned_uri}")
        else:
            try:
                path = local_source_path(dataset.source.path)
                source_hash, _ = store.stat_cache().file_hash(path)
            except InputError as exc:
                raise dg.Failure(description=str(exc)) from None
        labels = _labels_version(dataset, production)
        raw_events = list(materialize_stage(
            context, asset="raw_data", store=st,
            modules=("pipelines.stages.raw",),
            config=dataset.stage_config("raw_data"),
            inputs={"source": source_hash} | ({"labelled": labels} if labels else {}),
            compute=lambda key: _snapshot(dataset, st, production, labels is not None,
                                          lakefs_source),
            output_name="raw_data"))
        raw_hash = raw_events[0].value.content_hash
        try:
            feature_events = list(materialize_stage(
                context, asset="validated_features", store=st,
                modules=("pipelines.stages.features",),
                config=dataset.stage_config("validated_features"),
                inputs={"raw_data": raw_hash}, output_name="validated_features",
                compute=lambda key: _features(dataset, st, raw_hash)))
        except dg.Failure as exc:
            # The first line stays the one a user reads; the snapshot's hash follows it.
            raise dg.Failure(description=f"{exc.description}\n(The rejected snapshot is kept "
                                         f"in the store as {raw_hash}.)") from None
        yield from raw_events
        yield from feature_events

    return ingest
