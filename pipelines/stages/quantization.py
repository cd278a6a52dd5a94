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
from typing import Any

from pipelines.artifacts import StageResult, read_file, read_splits
from pipelines.export import export_predictor
from pipelines.features import SPLIT_COLUMN, onnx_feeds
from pipelines.hashing import canonical_json
from pipelines.quantize import Parity, parity, predict_rows, quantize_int8, session
from pipelines.spec import DatasetSpec, one_line
from pipelines.store import ArtifactStore, Manifest
from pipelines.training import load_weights

log = logging.getLogger(__name__)


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

    A network whose layers all read bounded values (``bounded_layer_inputs``) is
    quantized whole; otherwise the input layer's activations stay fp32.
    """
    calibration = train_rows.sample(n=min(calibration_rows, len(train_rows)), random_state=0)
    bounded = bool(getattr(model.body, "bounded_layer_inputs", False))
    return quantize_int8(fp32, onnx_feeds(calibration, params), input_layer_fp32=not bounded)


def build_variants(spec: DatasetSpec, store: ArtifactStore, features: Manifest,
                   weights: Manifest) -> StageResult:
    cfg = spec.quantization
    # Only the rows this stage uses: the training split (calibration) and the test split.
    columns = [*spec.columns, SPLIT_COLUMN]
    train_rows, test_rows = read_splits(store, features, "features", ("train", "test"),
                                        by=SPLIT_COLUMN, columns=columns)
    params = json.loads(read_file(store, weights, "preprocess.json"))
    fp32 = read_file(store, weights, "model_fp32.onnx")
    settings = weights.info.get("settings") or {"hidden": weights.info["hidden"],
                                                 "dropout": weights.info["dropout"]}
    model = load_weights(read_file(store, weights, "weights.safetensors"), params,
                         weights.info.get("architecture", "mlp"), settings)
    makers = {"int8": lambda: int8_variant(fp32, model, train_rows, params,
                                           cfg.calibration_rows),
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
    reference = predict_rows(session(fp32), test_rows, params)
    results = {}
    for name, data in list(candidates.items()):
        try:
            scored = predict_rows(session(data), test_rows, params)
        except Exception as exc:  # converted, but onnxruntime cannot load or run it
            log.warning("%s variant of %s cannot run", name, spec.name, exc_info=True)
            failed[name] = (f"{name}: onnxruntime cannot run it ({type(exc).__name__}: "
                            f"{one_line(str(exc))[:200]})")
            del candidates[name]
            continue
        results[name] = parity(name, reference, scored, tolerances[name])
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
