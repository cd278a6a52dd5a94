"""trained_weights: search hyperparameters, fit, export the whole predictor to ONNX.

With ``tuning.n_trials > 0`` an Optuna study (named by the recipe key, resumable) picks
the settings; the final fit from its best parameters is deterministic. A training sample
is kept as the reference for drift monitoring.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.artifacts import StageResult, read_frame
from pipelines.export import export_predictor
from pipelines.features import SPLIT_COLUMN
from pipelines.hashing import canonical_json
from pipelines.spec import DatasetSpec, TrainingSpec
from pipelines.stages.features import load_params
from pipelines.store import ArtifactStore, Manifest
from pipelines.training import build_model, pick_device, train, weights_bytes


def search(spec: DatasetSpec, train_rows: Any, val_rows: Any, params: dict[str, Any], *,
           study_url: str, study_name: str, threads: int, device: str,
           log: Any = None) -> tuple[TrainingSpec, dict[str, Any]]:
    """Run (or resume) the study; returns the final settings and the study summary."""
    from pipelines.tuning import open_study, run_study, summary, trial_config

    study, rdb = open_study(study_url, study_name, spec.tuning)
    run_study(study, rdb, train_rows, val_rows, params, spec.training, spec.tuning,
              threads=threads, device=device, log_trial=log.trial if log else None)
    result = summary(study)
    return trial_config(result["best_params"], spec.training), result


def build_trained_weights(
    spec: DatasetSpec,
    store: ArtifactStore,
    features: Manifest,
    *,
    threads: int,
    device: str,
    checkpoint_dir: Path,
    study_url: str | None = None,
    study_name: str | None = None,
    best_params: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    log: Any = None,
) -> StageResult:
    """Fit on the train split with early stopping on the validation split.

    Args:
        spec: The dataset spec.
        store: The artifact store.
        features: The validated_features manifest.
        threads: Pinned torch thread count.
        device: ``cpu``, ``cuda`` or ``auto``.
        checkpoint_dir: Where the final fit checkpoints each epoch (resumed on retry).
        study_url: Optuna RDB storage URL.
        study_name: The study's name (derived from the recipe key).
        on_epoch: Progress callback for the final fit.
        best_params: Searched parameters to fit with directly (reproducing a version);
            otherwise a study runs when the spec asks for one.
        log: A `pipelines.tracking.TrainingLog` (or None) for trials and the final fit.
    """
    from pipelines.tuning import trial_config

    frame = read_frame(store, features, "features")
    params = load_params(store, features)
    train_rows = frame[frame[SPLIT_COLUMN] == "train"]
    val_rows = frame[frame[SPLIT_COLUMN] == "val"]
    device = pick_device(device)
    study: dict[str, Any] = {}
    cfg = spec.training
    if best_params is not None:
        cfg = trial_config(best_params, spec.training)
    elif spec.tuning.n_trials > 0:
        if not study_url or not study_name:
            raise ValueError("tuning needs study storage (study_url) and a study name")
        cfg, study = search(spec, train_rows, val_rows, params, study_url=study_url,
                            study_name=study_name, threads=threads, device=device, log=log)
    result = train(train_rows, val_rows, params, cfg, threads=threads, device=device,
                   checkpoint_dir=checkpoint_dir, on_epoch=on_epoch)
    model = build_model(params, cfg.hidden, cfg.dropout)
    model.load_state_dict(result.state_dict)
    model.eval()
    onnx_model = export_predictor(model, params)
    reference = train_rows[[*spec.columns]].sample(
        n=min(cfg.reference_rows, len(train_rows)), random_state=cfg.seed).reset_index(drop=True)
    best = result.history[result.best_epoch]
    chosen = study.get("best_params", best_params)
    summary = {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "history": result.history, "device": result.device,
               "config": cfg.model_dump(mode="json"), "best_params": chosen}
    metadata: dict[str, Any] = {
        "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "best_val_loss": round(float(best["val_loss"]), 6),
        "best_val_auc": round(float(best["val_auc"]), 6),
        "device": result.device, "samples_per_second": round(result.samples_per_second, 1),
        "parameters": int(sum(v.numel() for v in result.state_dict.values())),
        "hidden": cfg.hidden, "learning_rate": cfg.learning_rate,
    }
    if study:
        metadata |= {"study": study_name, "trials_complete": study["complete"],
                     "trials_pruned": study["pruned"], "best_params": chosen}
    if log is not None:
        metadata["mlflow_run_id"] = log.final(
            params=cfg.model_dump(mode="json") | {"device": result.device},
            history=result.history,
            metrics={"best_val_loss": metadata["best_val_loss"],
                     "best_val_auc": metadata["best_val_auc"]},
            onnx_model=onnx_model, reference=reference)
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
