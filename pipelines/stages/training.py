"""trained_weights: fit the network, export the whole predictor to ONNX, keep a drift reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.artifacts import StageResult, read_frame
from pipelines.export import export_predictor
from pipelines.features import SPLIT_COLUMN
from pipelines.hashing import canonical_json
from pipelines.spec import DatasetSpec
from pipelines.stages.features import load_params
from pipelines.store import ArtifactStore, Manifest
from pipelines.training import build_model, pick_device, train, weights_bytes

Logger = Callable[[dict[str, Any]], str]


def build_trained_weights(
    spec: DatasetSpec,
    store: ArtifactStore,
    features: Manifest,
    *,
    threads: int,
    device: str,
    checkpoint_dir: Path,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    log_run: Logger | None = None,
) -> StageResult:
    """Train on the train split with early stopping on the validation split."""
    frame = read_frame(store, features, "features")
    params = load_params(store, features)
    cfg = spec.training
    train_rows = frame[frame[SPLIT_COLUMN] == "train"]
    result = train(train_rows, frame[frame[SPLIT_COLUMN] == "val"], params, cfg,
                   threads=threads, device=pick_device(device),
                   checkpoint_dir=checkpoint_dir, on_epoch=on_epoch)
    model = build_model(params, cfg.hidden, cfg.dropout)
    model.load_state_dict(result.state_dict)
    model.eval()
    onnx_model = export_predictor(model, params)
    columns = [*spec.columns]
    reference = train_rows[columns].sample(
        n=min(cfg.reference_rows, len(train_rows)), random_state=cfg.seed).reset_index(drop=True)
    best = result.history[result.best_epoch] if result.best_epoch < len(result.history) else {}
    summary = {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "history": result.history, "device": result.device,
               "config": cfg.model_dump(mode="json")}
    metadata: dict[str, Any] = {
        "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "best_val_loss": round(float(best.get("val_loss", float("nan"))), 6),
        "best_val_auc": round(float(best.get("val_auc", float("nan"))), 6),
        "device": result.device, "samples_per_second": round(result.samples_per_second, 1),
        "parameters": int(sum(v.numel() for v in result.state_dict.values())),
    }
    if log_run is not None:
        metadata["mlflow_run_id"] = log_run({
            "params": cfg.model_dump(mode="json") | {"device": result.device},
            "history": result.history,
            "metrics": {"best_val_loss": metadata["best_val_loss"],
                        "best_val_auc": metadata["best_val_auc"]},
            "onnx_model": onnx_model, "reference": reference})
    return StageResult(
        kind="trained_weights",
        files={"weights.safetensors": weights_bytes(result.state_dict),
               "model_fp32.onnx": onnx_model,
               "preprocess.json": canonical_json(params),
               "training.json": canonical_json(summary)},
        frames={"reference": reference},
        info={"hidden": cfg.hidden, "dropout": cfg.dropout},
        metadata=metadata,
    )
