"""Loading deployed models: verify each file's sha256 and signature, open sessions, warm up.

A model here is one deployed model (one registry version) with a session per variant
the service uses. Inputs are the raw feature columns; the graph does the preprocessing
the model was trained with, so there is no serving-side feature code to drift apart.

Before any ONNX Runtime session is made, each file is checked against the sha256 the
deployment history records and against its OpenSSF model signature in the version's audit
pack (``pipelines.audit``), and the pack's signed provenance, with the trusted public keys
(``TIDELINE_SIGNING_PUBLIC_KEY``, else the state folder's keys; the key inside the pack only
with ``TIDELINE_TRUST_PACK_KEY=1``). With no trusted key at all, a signed model is refused.
A version deployed before audit packs existed has no signature: it is still served, with a
warning, unless ``TIDELINE_REQUIRE_SIGNED=1``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.deploy import DeployedModel
from pipelines.store import ArtifactStore

LOG = logging.getLogger("tideline.serving")
FALLBACK = "fp32"  # every deployed version has it: it is the model, checked against torch


class ModelLoadError(RuntimeError):
    """A deployed model that cannot be served (missing, corrupted or failing to run)."""


@dataclass
class LoadedModel:
    version: int | None
    trained_weights: str
    numeric: list[str]
    categorical: list[str]
    sessions: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)
    # Variants serving asks for that this version did not publish (the quantized_weights
    # stage dropped them), and the variant that serves their traffic instead (fp32).
    fallbacks: dict[str, str] = field(default_factory=dict)
    # Each categorical column's training vocabulary (any other value is unknown to the
    # graph); None when the deployment record does not name the preprocessing parameters.
    vocabularies: dict[str, tuple[str, ...]] | None = None

    def served_variant(self, variant: str) -> str:
        """The variant that answers traffic configured for ``variant``."""
        return self.fallbacks.get(variant, variant)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def feeds(self, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """ONNX inputs for raw records.

        Missing numbers become NaN and missing categories "", as in training; the graph
        imputes them.
        """
        # (records, 0) when there is no numeric column: some graphs still take the input.
        feeds: dict[str, np.ndarray] = {"numeric": np.array(
            [[np.nan if r.get(c) is None else r[c] for c in self.numeric] for r in records],
            dtype="float32").reshape(len(records), len(self.numeric))}
        for i, col in enumerate(self.categorical):
            feeds[f"cat_{i}"] = np.array(
                [["" if r.get(col) is None else str(r[col])] for r in records], dtype=object)
        return feeds

    def run(self, variant: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        sess = self.sessions[self.served_variant(variant)]
        names = {i.name for i in sess.get_inputs()}
        out = sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]
        return np.asarray(out, dtype="float64").reshape(-1)


def load_model(store: ArtifactStore, entry: DeployedModel, variants: set[str],
               threads: int = 1) -> LoadedModel:
    """Load, verify and warm up the variants of one deployed model.

    A variant the version did not publish (dropped for its parity tolerance or size) is
    served by fp32: its traffic goes there (``LoadedModel.fallbacks``).

    Raises:
        ModelLoadError: naming the version, variant and what is wrong.
    """
    from pipelines.quantize import session

    fallbacks = {v: FALLBACK for v in variants
                 if v not in entry.variants and FALLBACK in entry.variants}
    sessions = {}
    for variant in sorted({fallbacks.get(v, v) for v in variants}):
        spec = entry.variants.get(variant)
        if spec is None:
            raise ModelLoadError(f"version {entry.version} has no {variant} variant; serving "
                                 "asks for it (serving.variants)")
        try:
            data = store.get_bytes(spec.content_hash)
        except KeyError as exc:
            raise ModelLoadError(f"version {entry.version} {variant}: file "
                                 f"{spec.content_hash} is missing from the store") from exc
        digest = spec.sha256_mismatch(data)
        if digest is not None:
            raise ModelLoadError(
                f"version {entry.version} {variant}: sha256 {digest[:16]}… does not match "
                f"the deployment record's {spec.sha256[:16]}… (corrupted or replaced file); "
                "refused")
        _check_signature(store, entry, variant, data)
        try:
            sessions[variant] = session(data, threads=threads)
        except Exception as exc:  # ORT raises its own exception types
            raise ModelLoadError(f"version {entry.version} {variant}: ONNX Runtime cannot "
                                 f"load it: {exc}") from exc
    model = LoadedModel(version=entry.version, trained_weights=entry.trained_weights,
                        numeric=list(entry.inputs.numeric),
                        categorical=list(entry.inputs.categorical), sessions=sessions,
                        fallbacks=fallbacks, vocabularies=training_vocabularies(store, entry))
    warm = model.feeds([{}])
    for variant in sessions:
        try:
            p = model.run(variant, warm)
        except Exception as exc:
            raise ModelLoadError(f"version {entry.version} {variant}: warm-up inference "
                                 f"failed: {exc}") from exc
        if not np.all(np.isfinite(p)):
            raise ModelLoadError(f"version {entry.version} {variant}: warm-up gave {p}")
    return model


def _check_signature(store: ArtifactStore, entry: DeployedModel, variant: str,
                     data: bytes) -> None:
    """Refuse a file whose signature fails, as a file whose sha256 differs is refused."""
    from pipelines.audit import check_model, require_signed
    from pipelines.paths import state_dir
    from pipelines.signing import SignatureError

    if entry.audit_pack is None:
        if require_signed():
            raise ModelLoadError(
                f"version {entry.version} {variant}: deployed without an audit pack, so "
                "unsigned, and TIDELINE_REQUIRE_SIGNED is set; refused (redeploy it to sign it)")
        LOG.warning("version %s %s: deployed before audit packs; served without a signature "
                    "check (set TIDELINE_REQUIRE_SIGNED=1 to refuse unsigned models)",
                    entry.version, variant)
        return
    try:
        found = check_model(store, entry, variant, data, state_dir())
    except SignatureError as exc:
        raise ModelLoadError(f"version {entry.version} {variant}: {exc}; refused") from None
    except Exception as exc:  # whatever else reading the pack raises: refused, never a crash
        raise ModelLoadError(f"version {entry.version} {variant}: its audit pack cannot be "
                             f"checked ({type(exc).__name__}: {exc}); refused") from None
    if not found.pinned:
        LOG.warning("version %s %s: signature checked against the key in its own audit pack "
                    "(TIDELINE_TRUST_PACK_KEY=1: integrity only); set "
                    "TIDELINE_SIGNING_PUBLIC_KEY to the signer's public key to check who "
                    "signed it", entry.version, variant)


def training_vocabularies(store: ArtifactStore,
                          entry: DeployedModel) -> dict[str, tuple[str, ...]] | None:
    """Each categorical input's training vocabulary, from the version's preprocessing parameters.

    Only the documentation uses them (the graph holds its own copy), so a version whose
    parameters cannot be read is still served: this logs why and returns None.
    """
    if entry.preprocess is None:  # entries written before the history recorded it
        return None
    try:
        params = json.loads(store.get_bytes(entry.preprocess))
        vocabularies = params["categorical"]
        return {c: tuple(str(v) for v in vocabularies[c]) for c in entry.inputs.categorical}
    except (KeyError, TypeError, ValueError, OSError) as exc:
        LOG.warning("version %s: no categorical vocabularies from its preprocessing parameters "
                    "%s (%s: %s); the API docs list no known values for it", entry.version,
                    entry.preprocess, type(exc).__name__, exc)
        return None
