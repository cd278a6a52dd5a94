"""Which model a candidate is judged against: the stable model of the deployment history.

The history is read on the cache-hit path (the champion is an input of the model card's
recipe), so it lives in the store as small JSON records and needs no MLflow import.
"""

from __future__ import annotations

from pipelines.deploy import DeployedModel, current
from pipelines.store import ArtifactStore


def baseline(store: ArtifactStore, model: str, candidate_weights: str) -> DeployedModel | None:
    """The model a candidate is judged against.

    That is the stable (champion) model, unless the candidate *is* it, in which case it is
    the stable model before it, so that re-running the chain keeps the same verdict (and
    cache key).
    """
    state = current(store, model)
    if state.stable and state.stable.trained_weights == candidate_weights:
        return state.previous
    return state.stable
