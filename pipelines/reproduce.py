"""Rebuild every stage of a model version in an empty store and compare with what it shipped.

Each stage is rebuilt from the *recorded* artifacts of its inputs (copied from the store),
so a difference is pinned to the stage that makes it, not smeared down the chain. For an
artifact that differs, the report names the first file (or ``info`` field) whose content
differs, which is where to start looking.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.artifacts import save_result
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore, Manifest

if TYPE_CHECKING:
    from pipelines.deploy import DeployedModel


@dataclass(frozen=True)
class Recorded:
    """The artifacts a model version was made of (content hashes; None when unknown)."""

    validated_features: str
    trained_weights: str
    raw_data: str | None = None
    quantized_weights: str | None = None
    model_card: str | None = None
    champion: DeployedModel | None = None  # the deployed model the card compared against


@dataclass(frozen=True)
class StageMatch:
    """One stage's verdict: rebuilt bytes equal to the recorded ones, or the first difference."""

    asset: str
    recorded: str | None
    rebuilt: str | None
    difference: str | None = None

    @property
    def matched(self) -> bool:
        return self.recorded is not None and self.recorded == self.rebuilt

    def line(self) -> str:
        if self.recorded is None:
            return f"{self.asset}: skipped ({self.difference})"
        if self.matched:
            return f"{self.asset}: matches {self.recorded}"
        return (f"{self.asset}: DIFFERS: recorded {self.recorded}, rebuilt {self.rebuilt}; "
                f"first difference: {self.difference}")


def copy_artifact(source: ArtifactStore, dest: ArtifactStore, content_hash: str) -> Manifest:
    """Copy a manifest and its files between stores (content-addressed, so verbatim)."""
    manifest = source.get_manifest(content_hash)
    for h in manifest.files.values():
        dest.put_bytes(source.get_bytes(h), content_hash=h)
    dest.put_manifest(manifest)
    return manifest


def first_difference(recorded: Manifest, rebuilt: Manifest) -> str:
    """Where two artifacts first differ: kind, a file, or an ``info`` field."""
    if recorded.kind != rebuilt.kind:
        return f"kind {recorded.kind!r} vs {rebuilt.kind!r}"
    for name in sorted(set(recorded.files) | set(rebuilt.files)):
        a, b = recorded.files.get(name), rebuilt.files.get(name)
        if a != b:
            return f"file {name} ({a or 'absent'} vs {b or 'absent'})"
    for key in sorted(set(recorded.info) | set(rebuilt.info)):
        a, b = recorded.info.get(key), rebuilt.info.get(key)
        if a != b:
            return f"info.{key} ({json.dumps(a)[:60]} vs {json.dumps(b)[:60]})"
    return "none found (the manifests are equal)"


def rebuild(spec: DatasetSpec, source: ArtifactStore, recorded: Recorded, workdir: Path, *,
            threads: int, device: str, best_params: dict[str, Any] | None,
            log: Callable[[str], None] = lambda line: None) -> list[StageMatch]:
    """Rebuild every stage of ``recorded`` in an empty store under ``workdir``.

    Args:
        spec: The dataset spec, with the recorded training settings applied.
        source: The store the version's artifacts are in.
        recorded: What the version was made of.
        workdir: An empty folder for the new store and training checkpoints.
        threads: The thread count the version was trained with.
        device: The device it was trained on.
        best_params: The searched parameters it was fitted with (no new search runs).
        log: Progress lines.
    """
    from pipelines.stages.features import build_features
    from pipelines.stages.model_card import build_card
    from pipelines.stages.quantization import build_variants
    from pipelines.stages.training import build_trained_weights

    empty = ArtifactStore(workdir / "store")
    matches: list[StageMatch] = []

    def judge(asset: str, expected: str | None, build: Callable[[], Any]) -> None:
        if expected is None:
            matches.append(StageMatch(asset, None, None, "not recorded for this version"))
            return
        log(f"rebuilding {asset}…")
        manifest = save_result(empty, build())
        difference = None
        if manifest.content_hash != expected:
            difference = first_difference(source.get_manifest(expected), manifest)
        matches.append(StageMatch(asset, expected, manifest.content_hash, difference))
        log(matches[-1].line())

    if recorded.raw_data is not None:
        raw = copy_artifact(source, empty, recorded.raw_data)
        judge("validated_features", recorded.validated_features,
              lambda: build_features(spec, empty, raw))
    else:
        matches.append(StageMatch("validated_features", None, None,
                                  "its raw_data snapshot is not recorded"))
    features = copy_artifact(source, empty, recorded.validated_features)
    judge("trained_weights", recorded.trained_weights,
          lambda: build_trained_weights(spec, empty, features, threads=threads, device=device,
                                        checkpoint_dir=workdir / "checkpoints",
                                        best_params=best_params))
    weights = copy_artifact(source, empty, recorded.trained_weights)
    judge("quantized_weights", recorded.quantized_weights,
          lambda: build_variants(spec, empty, features, weights))
    if recorded.quantized_weights is None:
        return matches
    variants = copy_artifact(source, empty, recorded.quantized_weights)
    if recorded.champion:
        copy_artifact(source, empty, recorded.champion.quantized_weights)
    judge("model_card", recorded.model_card,
          lambda: build_card(spec, empty, features, weights, variants,
                             lineage={"validated_features": recorded.validated_features,
                                      "trained_weights": recorded.trained_weights,
                                      "quantized_weights": recorded.quantized_weights},
                             champion=recorded.champion))
    return matches
