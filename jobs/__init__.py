"""Asset jobs. Local jobs run in process: the multiprocess executor costs seconds a step."""

from __future__ import annotations

import dagster as dg

CHAIN = ("raw_data", "validated_features", "trained_weights", "quantized_weights", "model_card")


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    # Observable sources are observed only when a job selects them explicitly.
    chain = dg.AssetSelection.assets("raw_source", *CHAIN)
    training_job = dg.define_asset_job(
        "training_job", selection=chain, executor_def=dg.in_process_executor,
        description="The whole chain: observe the source, snapshot, validate, train, "
                    "quantize and write the model card. Unchanged stages are cache hits.",
    )
    return [training_job]
