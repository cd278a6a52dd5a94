"""quantized_weights: fp32, int8 (static QDQ) and fp16 variants, each checked for parity."""

from __future__ import annotations

import json

from pipelines.artifacts import StageFailure, StageResult, read_file, read_frame
from pipelines.export import export_predictor
from pipelines.features import SPLIT_COLUMN, onnx_feeds
from pipelines.hashing import canonical_json
from pipelines.quantize import ParityError, check_parity, parity, predict, quantize_int8, session
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore, Manifest
from pipelines.training import load_weights


def build_variants(spec: DatasetSpec, store: ArtifactStore, features: Manifest,
                   weights: Manifest) -> StageResult:
    cfg = spec.quantization
    frame = read_frame(store, features, "features")
    params = json.loads(read_file(store, weights, "preprocess.json"))
    fp32 = read_file(store, weights, "model_fp32.onnx")
    model = load_weights(read_file(store, weights, "weights.safetensors"), params,
                         weights.info["hidden"], weights.info["dropout"])
    train_rows = frame[frame[SPLIT_COLUMN] == "train"]
    calibration = train_rows.sample(n=min(cfg.calibration_rows, len(train_rows)),
                                    random_state=0)
    int8 = quantize_int8(fp32, onnx_feeds(calibration, params))
    fp16 = export_predictor(model, params, precision="fp16")
    test_feeds = onnx_feeds(frame[frame[SPLIT_COLUMN] == "test"], params)
    reference = predict(session(fp32), test_feeds)
    results = [parity("int8", reference, predict(session(int8), test_feeds), cfg.int8_tolerance),
               parity("fp16", reference, predict(session(fp16), test_feeds), cfg.fp16_tolerance)]
    report = {p.variant: {"max_abs_diff": p.max_abs_diff, "mean_abs_diff": p.mean_abs_diff,
                          "tolerance": p.tolerance, "rows": p.rows} for p in results}
    try:
        check_parity(results)
    except ParityError as exc:
        raise StageFailure(f"quantized variants rejected: {exc}") from exc
    sizes = {"fp32": len(fp32), "int8": len(int8), "fp16": len(fp16)}
    return StageResult(
        kind="quantized_weights",
        files={"model_fp32.onnx": fp32, "model_int8.onnx": int8, "model_fp16.onnx": fp16,
               "preprocess.json": canonical_json(params), "parity.json": canonical_json(report)},
        info={"tolerances": {"int8": cfg.int8_tolerance, "fp16": cfg.fp16_tolerance}},
        metadata={"bytes": sizes,
                  "int8_max_abs_diff": round(report["int8"]["max_abs_diff"], 6),
                  "fp16_max_abs_diff": round(report["fp16"]["max_abs_diff"], 6),
                  "int8_size_ratio": round(sizes["fp32"] / sizes["int8"], 3)},
    )
