"""Asset keys of one model: every stage's key is prefixed with the model's name."""

import dagster as dg

from pipelines.spec import DatasetSpec


def key(spec: DatasetSpec, stage: str) -> dg.AssetKey:
    """``<model>/<stage>``, e.g. ``adult/model_card``."""
    return dg.AssetKey([spec.name, stage])


def ins(spec: DatasetSpec, *stages: str) -> dict[str, dg.AssetIn]:
    """Inputs named after upstream stages of the same model."""
    return {stage: dg.AssetIn(key=key(spec, stage)) for stage in stages}
