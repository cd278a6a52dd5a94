"""quantized_weights: fp32 / int8 / fp16 ONNX variants with parity checked on held-out rows."""

import dagster as dg

from assets.memo import materialize_stage
from assets.naming import ins, key
from pipelines.spec import DatasetSpec
from resources.refs import ArtifactRef
from resources.store import ArtifactStoreResource


def build_quantized_weights(spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.asset(key=key(spec, "quantized_weights"), group_name=spec.name,
              ins=ins(spec, "validated_features", "trained_weights"), kinds={"onnx"},
              description="ONNX variants of the whole predictor: fp32, int8 (static QDQ, "
                          "batch-independent) and fp16, each within its parity tolerance.")
    def quantized_weights(context: dg.AssetExecutionContext, validated_features: ArtifactRef,
                          trained_weights: ArtifactRef, store: ArtifactStoreResource):
        st = store.get()

        def compute(recipe: str):
            from pipelines.stages.quantization import build_variants

            return build_variants(spec, st, st.get_manifest(validated_features.content_hash),
                                  st.get_manifest(trained_weights.content_hash),
                                  on_progress=context.log.info)

        yield from materialize_stage(
            context, asset="quantized_weights", model=spec.name, store=st,
            modules=("pipelines.stages.quantization",),
            config=spec.stage_config("quantized_weights"),
            inputs={"validated_features": validated_features.content_hash,
                    "trained_weights": trained_weights.content_hash},
            compute=compute,
        )

    return quantized_weights
