"""Which model is the champion: a record in the artifact store, mirrored to MLflow aliases.

The record is read on the cache-hit path (it is an input of the model card's recipe),
so it lives in the store as a small JSON and needs no MLflow import to read.
"""

from __future__ import annotations

from typing import Any

from pipelines.store import ArtifactStore


def _name(model: str) -> str:
    return f"aliases/{model}"


def aliases(store: ArtifactStore, model: str) -> dict[str, Any]:
    """``{"champion": entry | None, "previous": entry | None}`` for a registered model."""
    record = store.read_record(_name(model)) or {}
    return {"champion": record.get("champion"), "previous": record.get("previous")}


def baseline(store: ArtifactStore, model: str, candidate_weights: str) -> dict[str, Any] | None:
    """The model a candidate is judged against.

    That is the champion, unless the candidate *is* the champion, in which case it is the
    model it replaced, so that re-running the chain keeps the same verdict (and cache key).
    """
    current = aliases(store, model)
    champion = current["champion"]
    if champion and champion["trained_weights"] == candidate_weights:
        return current["previous"]
    return champion


def promote_champion(store: ArtifactStore, tracking_uri: str, model: str,
                     entry: dict[str, Any]) -> dict[str, Any]:
    """Promote ``entry`` in the store record and point the MLflow aliases to match."""
    from pipelines.tracking import set_aliases

    updated = promote(store, model, entry)
    set_aliases(tracking_uri, model,
                {alias: (e or {}).get("version") for alias, e in updated.items()})
    return updated


def promote(store: ArtifactStore, model: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Make ``entry`` the champion; the old champion becomes ``previous``."""
    current = aliases(store, model)
    if current["champion"] and current["champion"]["trained_weights"] == entry[
            "trained_weights"]:
        return current
    updated = {"champion": entry, "previous": current["champion"]}
    store.write_record(_name(model), updated)
    return updated
