"""trained_weights: search hyperparameters, fit, export the whole predictor to ONNX.

With ``tuning.n_trials > 0`` an Optuna study (named by the recipe key, resumable) picks
the settings; the final fit from its best parameters is deterministic. A training sample
is kept as the reference for drift monitoring.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.architectures import user_code
from pipelines.artifacts import StageResult, iter_frame
from pipelines.cost import cost, hardware, prices, process_cpu_seconds
from pipelines.devices import gpu_name
from pipelines.export import export_predictor
from pipelines.features import LABEL_COLUMN, SPLIT_COLUMN, SeededSample
from pipelines.hashing import canonical_json
from pipelines.resources import batch_rows, memory_budget
from pipelines.spec import DatasetSpec, TrainingSpec
from pipelines.stages.features import load_params
from pipelines.store import ArtifactStore, Manifest
from pipelines.training import (
    EncodedRows,
    build_model,
    encode_batches,
    encoded_row_bytes,
    model_settings,
    pick_device,
    train,
    weights_bytes,
)

if TYPE_CHECKING:
    import pandas as pd

# The encoded splits stay in memory while they take at most this share of the memory
# budget; larger, they go to files read a minibatch at a time.
RESIDENT_SHARE = 0.5
# Of the budget, what reading on-disk splits may keep mapped before it is let go.
MAPPED_SHARE = 0.25


@dataclass(frozen=True)
class TrainingData:
    """The train and validation splits encoded for the model, and the reference sample."""

    train: EncodedRows
    val: EncodedRows
    reference: pd.DataFrame


def read_bytes_per_row(spec: DatasetSpec) -> int:
    """Bytes one features row costs while a batch of them is read and encoded.

    That is the Arrow batch (text as strings, ~24 bytes a value with its offset), its
    filtered copy, the pandas batch (text as category codes) and the encoded row.
    """
    n_num, n_text = len(spec.numeric_columns), len(spec.categorical_columns)
    return 2 * (8 * n_num + 24 * n_text + 16) + 4 * n_num + 8 * n_text + 4


def encode_splits(spec: DatasetSpec, store: ArtifactStore, features: Manifest,
                  params: dict[str, Any], *, budget: int, scratch: Path) -> TrainingData:
    """Read the train and validation splits in batches and encode them for the model.

    Both stay in memory while they fit in `RESIDENT_SHARE` of ``budget``; otherwise they
    are written under ``scratch`` and read from there. The reference sample (the rows
    ``train.sample(n=reference_rows, random_state=seed)`` gives) is gathered on the way.
    Neither the budget nor the form changes what training computes from them.
    """
    counts = features.info["rows"]
    rows = {"train": int(counts["train"]), "val": int(counts["val"])}
    on_disk = (rows["train"] + rows["val"]) * encoded_row_bytes(params) > budget * RESIDENT_SHARE
    columns = [*spec.columns, LABEL_COLUMN]
    size = batch_rows(budget, read_bytes_per_row(spec))
    # The final fit's settings (`trial_config`) keep the spec's seed and reference_rows.
    cfg = spec.training
    sample = SeededSample(rows["train"], min(cfg.reference_rows, rows["train"]), cfg.seed,
                          list(spec.columns))

    def batches(split: str) -> Iterator[pd.DataFrame]:
        for batch in iter_frame(store, features, "features", batch_rows=size, columns=columns,
                                where=(SPLIT_COLUMN, split), categories=True):
            if split == "train":
                sample.add(batch)
            yield batch

    encoded = {split: encode_batches(batches(split), params, rows[split],
                                     folder=scratch / split if on_disk else None,
                                     mapped_limit=int(budget * MAPPED_SHARE))
               for split in ("train", "val")}
    return TrainingData(encoded["train"], encoded["val"],
                        sample.frame().reset_index(drop=True))


def search(spec: DatasetSpec, train_rows: EncodedRows, val_rows: EncodedRows,
           params: dict[str, Any], *,
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
    on_progress: Callable[[Any], None] | None = None,
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
        on_epoch: Called after each epoch of the final fit.
        on_progress: Called inside a long epoch of the final fit (`pipelines.training.Progress`).
        best_params: Searched parameters to fit with directly (reproducing a version);
            otherwise a study runs when the spec asks for one.
        log: A `pipelines.tracking.TrainingLog` (or None) for trials and the final fit.

    The metadata's ``cost`` (a fact of the run, not of the artifact) is what the stage took:
    the process's CPU seconds from here to the exported model (tuning trials included),
    the wall seconds of tuning and the fit when they ran on a GPU, the hardware, and
    their price from the spec's ``cost`` section or the environment.
    """
    import shutil

    from pipelines.tuning import trial_config

    cpu_start = process_cpu_seconds()
    params = load_params(store, features)
    # Encoded splits too large for memory go to a scratch folder beside the checkpoints:
    # removed below, and with the whole folder once a run (or its retry) has its result.
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    # One fixed folder, emptied first: what a killed run left there goes on the retry.
    scratch = checkpoint_dir / "encoded"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        # Only the train and validation rows are read, a batch at a time.
        data = encode_splits(spec, store, features, params, budget=memory_budget(spec),
                             scratch=scratch)
        device = pick_device(device)
        on_device = time.perf_counter()
        study: dict[str, Any] = {}
        cfg = spec.training
        if best_params is not None:
            cfg = trial_config(best_params, spec.training)
        elif spec.tuning.n_trials > 0:
            if not study_url or not study_name:
                raise ValueError("tuning needs study storage (study_url) and a study name")
            cfg, study = search(spec, data.train, data.val, params, study_url=study_url,
                                study_name=study_name, threads=threads, device=device, log=log)
        with user_code(cfg.model, "training"):
            result = train(data.train, data.val, params, cfg, threads=threads, device=device,
                           checkpoint_dir=checkpoint_dir, on_epoch=on_epoch,
                           on_progress=on_progress)
        gpu_seconds = time.perf_counter() - on_device if device.startswith("cuda") else 0.0
        reference = data.reference
        del data
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    model = build_model(params, cfg.model, model_settings(cfg))
    model.load_state_dict(result.state_dict)
    model.eval()
    with user_code(cfg.model, "exporting to ONNX"):
        onnx_model = export_predictor(model, params)
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
        "architecture": cfg.model, "hidden": cfg.hidden, "learning_rate": cfg.learning_rate,
    }
    if study:
        metadata |= {"study": study_name, "trials_complete": study["complete"],
                     "trials_pruned": study["pruned"], "best_params": chosen}
    spent = cost(process_cpu_seconds() - cpu_start, gpu_seconds, hardware(gpu_name(device)),
                 prices(spec.cost))
    metadata["cost"] = spent.to_json()
    if log is not None:
        metadata["mlflow_run_id"] = log.final(
            params=cfg.model_dump(mode="json") | {"device": result.device},
            history=result.history,
            metrics={"best_val_loss": metadata["best_val_loss"],
                     "best_val_auc": metadata["best_val_auc"]},
            onnx_model=onnx_model, reference=reference)
        log.log_cost(spent)
    return StageResult(
        kind="trained_weights",
        files={"weights.safetensors": weights_bytes(result.state_dict),
               "model_fp32.onnx": onnx_model,
               "preprocess.json": canonical_json(params),
               "training.json": canonical_json(summary)},
        frames={"reference": reference},
        info={"hidden": cfg.hidden, "dropout": cfg.dropout, "architecture": cfg.model,
              "settings": model_settings(cfg)},
        metadata=metadata,
    )


@dataclass
class LoggedTraining:
    """One ``trained_weights`` computation with its MLflow run and registry version.

    ``compute`` trains (resuming from a checkpoint an interrupted run left) inside an MLflow
    run; ``register`` then registers the stored weights once per recipe key. Progress goes
    to ``say`` (one line per epoch and trial).
    """

    spec: DatasetSpec
    store: ArtifactStore
    features_hash: str
    tracking_uri: str
    experiment: Callable[[], str]
    optuna_storage: str
    checkpoint_dir: Callable[[str], Path]
    device: str
    threads: int
    tags: dict[str, str]
    say: Callable[[str], None]
    run: Any = None
    key: str = ""

    def _epoch(self, row: dict[str, Any]) -> None:
        self.say(f"epoch {row['epoch'] + 1}/{row['epochs']}: train loss {row['train_loss']:.4f}, "
                 f"val loss {row['val_loss']:.4f}, val AUC {row['val_auc']:.4f}")

    def _trial(self, record: Any) -> None:
        self.say(f"trial {record.number}: {record.state}, val loss {record.value}, "
                 f"{record.epochs_run} epochs")

    def compute(self, key: str) -> StageResult:
        import shutil

        from pipelines.tracking import TrainingLog

        study = f"trained_weights-{key.split(':')[-1][:32]}"
        if self.spec.tuning.n_trials:
            self.say(f"Optuna study {study}: {self.spec.tuning.n_trials} trials; more workers "
                     f"can join with `python -m cli.tune_worker --model {self.spec.name} "
                     f"--study {study} --features {self.features_hash}`")
        self.key = key
        checkpoints = self.checkpoint_dir(key)
        if (checkpoints / "checkpoint.pt").exists():
            self.say(f"resuming the final fit from the checkpoint an interrupted run left in "
                     f"{checkpoints}")
        tags = {"recipe_key": key, "data_hash": self.features_hash,
                "dataset_spec": self.spec.name, "tideline/model": self.spec.name} | self.tags
        with TrainingLog(self.tracking_uri, self.experiment(), run_name="trained_weights",
                         tags=tags, on_trial=self._trial) as run:
            self.run = run
            result = build_trained_weights(
                self.spec, self.store, self.store.get_manifest(self.features_hash),
                threads=self.threads, device=self.device, checkpoint_dir=checkpoints,
                study_url=self.optuna_storage, study_name=study, on_epoch=self._epoch,
                on_progress=lambda p: self.say(p.line()), log=run)
        # A retried run resumes from the checkpoint; once the result exists it is not needed.
        shutil.rmtree(checkpoints, ignore_errors=True)
        return result

    def register(self, content_hash: str, result: StageResult) -> None:
        import json

        from pipelines.tracking import git_commit

        # Once per recipe key: a run killed after registering, before its memo entry, must
        # not leave the registry a duplicate of the same weights when the rerun gets here.
        registered = self.run.register_once(self.spec.name, tags={
            "recipe_key": self.key, "trained_weights": content_hash,
            "data_hash": self.features_hash, "git_commit": git_commit(),
            "dataset_spec": self.spec.name, "tideline/model": self.spec.name,
            "device": self.device, "threads": str(self.threads),
            "best_params": json.dumps(result.metadata.get("best_params")),
            "stage_config": json.dumps(self.spec.stage_config("trained_weights"))})
        if registered.reused:
            self.say(f"reusing registry version {registered.version} of {self.spec.name}: it "
                     "holds these weights for this recipe key")
        result.metadata["registry_version"] = registered.version
