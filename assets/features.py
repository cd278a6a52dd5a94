"""validated_features, with one asset check per rule the dataset spec implies."""

import dagster as dg

from assets.memo import materialize_stage
from pipelines.spec import DatasetSpec
from resources.refs import ArtifactRef
from resources.store import ArtifactStoreResource, DatasetSpecResource


def build_validated_features(spec: DatasetSpec) -> dg.AssetsDefinition:
    """The asset, with its checks built from the spec when definitions load."""
    from pipelines.validation import check_names

    checks = [dg.AssetCheckSpec(name, asset="validated_features", description=desc,
                                blocking=True) for name, desc in check_names(spec)]

    @dg.asset(name="validated_features", group_name="features", check_specs=checks,
              description="Rows that pass the spec's Great Expectations suite, typed, labelled "
                          "and split; failing rows are quarantined with reasons.")
    def validated_features(context: dg.AssetExecutionContext, raw_data: ArtifactRef,
                           spec: DatasetSpecResource, store: ArtifactStoreResource):
        from pipelines.stages.features import build_features

        dataset, st = spec.get(), store.get()
        yield from materialize_stage(
            context, asset="validated_features", store=st,
            modules=("pipelines.stages.features",),
            config=dataset.stage_config("validated_features"),
            inputs={"raw_data": raw_data.content_hash},
            compute=lambda key: build_features(dataset, st, st.get_manifest(
                raw_data.content_hash)),
        )

    return validated_features
