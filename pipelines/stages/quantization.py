"""quantized_weights: fp32, int8 (static QDQ) and fp16 variants, each checked for parity.

fp32 is the model: it must match torch, and a mismatch fails the stage. A quantized variant
is published only when it earns its place: within its parity tolerance of fp32 and (int8)
smaller than fp32. Otherwise it is dropped, with the reason in the stage's info
(``dropped``) and metadata (``dropped_variants``), and the run goes on with the variants
that passed: a variant never fails the run or blocks deployment of fp32.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pipelines.artifacts import StageResult, iter_frame, read_file
from pipelines.export import export_predictor
from pipelines.features import SPLIT_COLUMN, onnx_feeds, seeded_sample
from pipelines.hashing import canonical_json
from pipelines.progress import RowProgress
from pipelines.quantize import (
    ChunkedScorer,
    Parity,
    parity,
    quantize_int8,
    session,
)
from pipelines.resources import batch_rows, memory_budget
from pipelines.spec import DatasetSpec, one_line
from pipelines.store import ArtifactStore, Manifest
from pipelines.training import load_weights

log = logging.getLogger(__name__)

# What one streamed row costs in memory: its batch with text cells as Python strings
# (about 1.2 kB on Adult-like rows) plus its ONNX inputs.
ROW_BYTES = 1_500
# The seed of the calibration sample (``DataFrame.sample``'s ``random_state``).
CALIBRATION_SEED = 0


def drop_reason(result: Parity, size: int, fp32_size: int) -> str | None:
    """Why a quantized variant is not published, or ``None`` when it earns its place."""
    if not result.ok:
        return (f"{result.variant}: max |Δp| {result.max_abs_diff:.4g} over tolerance "
                f"{result.tolerance:g} (quantization.{result.variant}_tolerance) on "
                f"{result.rows} held-out rows")
    if result.variant == "int8" and size >= fp32_size:
        return (f"int8: {size / 1000:.1f} kB is not smaller than fp32's "
                f"{fp32_size / 1000:.1f} kB")
    return None


def int8_variant(fp32: bytes, model: Any, train_rows: Any, params: dict[str, Any],
                 calibration_rows: int) -> bytes:
    """The int8 variant of ``fp32``, calibrated on a seeded sample of the training rows.

    ``train_rows`` is a frame of them all; the stage gathers the same sample (the same
    calibration rows) while streaming the split instead.
    """
    calibration = train_rows.sample(n=min(calibration_rows, len(train_rows)),
                                    random_state=CALIBRATION_SEED)
    return int8_from_calibration(fp32, model, calibration, params)


def int8_from_calibration(fp32: bytes, model: Any, calibration: Any,
                          params: dict[str, Any]) -> bytes:
    """The int8 variant of ``fp32``, calibrated on the raw rows ``calibration``.

    A network whose layers all read bounded values (``bounded_layer_inputs``) is
    quantized whole; otherwise the input layer's activations stay fp32.
    """
    bounded = bool(getattr(model.body, "bounded_layer_inputs", False))
    return quantize_int8(fp32, onnx_feeds(calibration, params), input_layer_fp32=not bounded)


def build_variants(spec: DatasetSpec, store: ArtifactStore, features: Manifest,
                   weights: Manifest, on_progress: Callable[[str], None] | None = None
                   ) -> StageResult:
    """The published variants of the trained network, with their parity with fp32.

    The features are streamed in batches sized by the memory budget: the training rows
    once (the int8 calibration sample), the test rows once (every variant scored); the
    result is the same whatever the budget. ``on_progress`` gets a line every few
    seconds of the test pass.
    """
    cfg = spec.quantization
    rows = features.info["rows"]
    per_batch = batch_rows(memory_budget(spec), ROW_BYTES)

    def split(name: str) -> Any:
        return iter_frame(store, features, "features", batch_rows=per_batch,
                          columns=list(spec.columns), where=(SPLIT_COLUMN, name),
                          categories=True)

    params = json.loads(read_file(store, weights, "preprocess.json"))
    fp32 = read_file(store, weights, "model_fp32.onnx")
    settings = weights.info.get("settings") or {"hidden": weights.info["hidden"],
                                                 "dropout": weights.info["dropout"]}
    model = load_weights(read_file(store, weights, "weights.safetensors"), params,
                         weights.info.get("architecture", "mlp"), settings)

    # The rows pandas' seeded sample of the whole training split would pick, gathered
    # from the stream: the same calibration rows (and int8 bytes) at any budget.
    calibration = seeded_sample(split("train"), rows["train"],
                                cfg.calibration_rows, seed=CALIBRATION_SEED)
    makers = {"int8": lambda: int8_from_calibration(fp32, model, calibration, params),
              "fp16": lambda: export_predictor(model, params, precision="fp16")}
    candidates: dict[str, bytes] = {}
    failed: dict[str, str] = {}
    for name, make in makers.items():
        try:
            candidates[name] = make()
        except Exception as exc:  # a network the converter cannot take (a user's model)
            log.warning("%s variant of %s failed", name, spec.name, exc_info=True)
            failed[name] = (f"{name}: conversion failed ({type(exc).__name__}: "
                            f"{one_line(str(exc))[:200]})")
    tolerances = {"int8": cfg.int8_tolerance, "fp16": cfg.fp16_tolerance}
    sessions = {"fp32": session(fp32)}
    unusable: dict[str, Exception] = {}
    for name, data in candidates.items():
        try:
            sessions[name] = session(data)
        except Exception as exc:  # converted, but onnxruntime cannot load it
            unusable[name] = exc
    # fp32 and every candidate scored on the test rows in one pass over them; only the
    # probabilities are kept.
    scorer = ChunkedScorer(sessions, params, tolerate=candidates)
    progress = RowProgress(on_progress, f"parity: {', '.join(sessions)} scored",
                           int(rows["test"]))
    for batch in split("test"):
        scorer.add(batch)
        progress.add(len(batch))
    scored = scorer.finish()
    unusable |= scorer.failures
    for name in [n for n in candidates if n in unusable]:
        log.warning("%s variant of %s cannot run", name, spec.name, exc_info=unusable[name])
        failed[name] = (f"{name}: onnxruntime cannot run it ({type(unusable[name]).__name__}: "
                        f"{one_line(str(unusable[name]))[:200]})")
        del candidates[name]
    reference = scored["fp32"]
    results = {name: parity(name, reference, scored[name], tolerances[name])
               for name in candidates}
    report = {p.variant: {"max_abs_diff": p.max_abs_diff, "mean_abs_diff": p.mean_abs_diff,
                          "tolerance": p.tolerance, "rows": p.rows} for p in results.values()}
    sizes = {"fp32": len(fp32)} | {name: len(data) for name, data in candidates.items()}
    dropped = failed | {name: reason for name, p in results.items()
                        if (reason := drop_reason(p, sizes[name], sizes["fp32"])) is not None}
    published = ["fp32", *(name for name in candidates if name not in dropped)]
    files = {f"model_{name}.onnx": data for name, data in candidates.items()
             if name not in dropped}
    return StageResult(
        kind="quantized_weights",
        files={"model_fp32.onnx": fp32, **files, "preprocess.json": canonical_json(params),
               "parity.json": canonical_json(report)},
        info={"tolerances": tolerances, "published": published, "dropped": dropped},
        metadata={"bytes": sizes, "published_variants": published,
                  "dropped_variants": dropped,
                  **{f"{name}_max_abs_diff": round(report[name]["max_abs_diff"], 6)
                     for name in report},
                  # int8 bytes ÷ fp32 bytes: below 1 when int8 is smaller.
                  **({"int8_size_ratio": round(sizes["int8"] / sizes["fp32"], 3)}
                     if "int8" in sizes else {})},
    )
