"""raw_data and validated_features, materialized together in one step.

A snapshot is published as ``raw_data`` only when it validates, so bad input never
becomes the latest raw data: the rejected bytes stay in the store (nothing is lost) and
the error names their hash. Both assets keep their own memo entries.
"""

import dagster as dg

from assets.memo import materialize_stage
from assets.naming import key
from pipelines.ingest import InputError
from pipelines.spec import DatasetSpec
from resources.store import ArtifactStoreResource, LakeFSResource, ProductionResource


def build_ingest_assets(spec: DatasetSpec) -> dg.AssetsDefinition:
    """The two assets, with validation checks built from the spec when definitions load."""
    from pipelines.validation import check_names

    checks = [dg.AssetCheckSpec(name, asset=key(spec, "validated_features"), description=desc,
                                blocking=True) for name, desc in check_names(spec)]

    @dg.multi_asset(
        name=f"{spec.name}_ingest", group_name=spec.name, check_specs=checks, can_subset=False,
        outs={"raw_data": dg.AssetOut(
                  key=key(spec, "raw_data"),
                  description="Byte-exact snapshot of the source in the content-addressed "
                              "store."),
              "validated_features": dg.AssetOut(
                  key=key(spec, "validated_features"),
                  description="Rows that pass the spec's Great Expectations suite, typed, "
                              "labelled and split; failing rows are quarantined with reasons.")},
        deps=[key(spec, "raw_source")],
        internal_asset_deps={"raw_data": {key(spec, "raw_source")},
                             "validated_features": {key(spec, "raw_data")}},
    )
    def ingest(context: dg.AssetExecutionContext, store: ArtifactStoreResource,
               production: ProductionResource, lakefs: LakeFSResource):
        from pipelines.lakefs import LakeFSError
        from pipelines.stages.raw import SourceInputs

        st = store.get()
        try:
            found = SourceInputs.find(spec, store.stat_cache(), production.path(spec.name),
                                      lakefs.client)
        except (InputError, LakeFSError) as exc:
            raise dg.Failure(description=str(exc)) from None
        if found.lakefs is not None:
            context.log.info(f"source {spec.source.path} is {found.lakefs[1].pinned_uri}")

        def features(recipe: str):
            # Imported on a miss only: the cache-hit path loads no heavy library.
            from pipelines.stages.features import build_features

            return build_features(spec, st, st.get_manifest(raw_hash),
                                  on_progress=context.log.info)

        raw_events = list(materialize_stage(
            context, asset="raw_data", model=spec.name, store=st,
            modules=("pipelines.stages.raw",), config=spec.stage_config("raw_data"),
            inputs=found.inputs, compute=lambda recipe: found.snapshot(st),
            output_name="raw_data"))
        raw_hash = raw_events[0].value.content_hash
        try:
            feature_events = list(materialize_stage(
                context, asset="validated_features", model=spec.name, store=st,
                modules=("pipelines.stages.features",),
                config=spec.stage_config("validated_features"),
                inputs={"raw_data": raw_hash}, output_name="validated_features",
                compute=features))
        except dg.Failure as exc:
            # The first line stays the one a user reads; the snapshot's hash follows it.
            raise dg.Failure(description=f"{exc.description}\n(The rejected snapshot is kept "
                                         f"in the store as {raw_hash}.)") from None
        yield from raw_events
        yield from feature_events

    return ingest
