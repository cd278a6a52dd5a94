"""quantized_weights: fp32 / int8 / fp16 ONNX variants with parity checked on held-out rows."""

import dagster as dg

from assets.memo import materialize_stage
from resources.refs import ArtifactRef
from resources.store import ArtifactStoreResource, DatasetSpecResource


@dg.asset(group_name="model", description="ONNX variants of the whole predictor: fp32, int8 "
          "(static QDQ, batch-independent) and fp16, each within its parity tolerance.")
def quantized_weights(context: dg.AssetExecutionContext, validated_features: ArtifactRef,
                      trained_weights: ArtifactRef, spec: DatasetSpecResource,
                      store: ArtifactStoreResource):
    dataset, st = spec.get(), store.get()
    yield from materialize_stage(
        context, asset="quantized_weights", store=st,
        modules=("pipelines.stages.quantization",),
        config=dataset.stage_config("quantized_weights"),
        inputs={"validated_features": validated_features.content_hash,
                "trained_weights": trained_weights.content_hash},
        compute=lambda key: _variants(dataset, st, validated_features, trained_weights),
    )


def _variants(dataset, store, features: ArtifactRef, weights: ArtifactRef):
    from pipelines.stages.quantization import build_variants

    return build_variants(dataset, store, store.get_manifest(features.content_hash),
                          store.get_manifest(weights.content_hash))
