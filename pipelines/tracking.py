"""MLflow: training runs with nested trial runs, the model registry and its aliases.

Imported only on a cache miss (``import mlflow`` takes seconds). Models are logged and
registered as ONNX; nothing is pickled. Registry stages are deprecated: promotion and
rollback move the ``champion`` and ``previous`` aliases.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import telemetry

if TYPE_CHECKING:
    from pipelines.cost import Cost

REPO_DIR = Path(__file__).resolve().parent.parent


def import_mlflow() -> Any:
    """Import mlflow with its usage telemetry off (Tideline sends nothing anywhere)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


@dataclass(frozen=True)
class RegistryVersion:
    """A model's registry version and whether registering found it already there."""

    version: int
    reused: bool


def git_commit() -> str:
    """The repository's commit, with ``-dirty`` when the tree has changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_DIR, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def traced(tags: dict[str, str]) -> dict[str, str]:
    """An MLflow run's tags with the trace id of the current span, when tracing is on."""
    trace_id = telemetry.current_trace_id()
    return tags | {telemetry.MLFLOW_TAG: trace_id} if trace_id else tags


class TrainingLog:
    """One MLflow run per training; each tuning trial is a nested run under it."""

    def __init__(self, tracking_uri: str, experiment_id: str, run_name: str,
                 tags: dict[str, str], on_trial: Any = None):
        self.uri, self.experiment_id, self.run_name, self.tags = (
            tracking_uri, experiment_id, run_name, tags)
        self.on_trial = on_trial  # progress callback, given each trial record
        self.run_id: str | None = None
        self.model_uri: str | None = None
        self._mlflow: Any = None

    def __enter__(self) -> TrainingLog:
        mlflow = self._mlflow = import_mlflow()
        mlflow.set_tracking_uri(self.uri)
        run = mlflow.start_run(experiment_id=self.experiment_id, run_name=self.run_name,
                               tags=traced(self.tags))
        self.run_id = run.info.run_id
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self._mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

    def trial(self, record: Any) -> None:
        if self.on_trial is not None:
            self.on_trial(record)
        mlflow = self._mlflow
        with mlflow.start_run(experiment_id=self.experiment_id, nested=True,
                              run_name=f"trial {record.number}",
                              tags=traced({"trial_state": record.state})):
            mlflow.log_params(record.params)
            for row in record.history:
                mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"},
                                   step=int(row["epoch"]))
            if record.value is not None:
                mlflow.log_metric("best_val_loss", record.value)
            mlflow.log_metric("epochs_run", record.epochs_run)

    def final(self, *, params: dict[str, Any], history: list[dict[str, Any]],
              metrics: dict[str, float], onnx_model: bytes, reference: Any) -> str:
        """Log the final fit: params, per-epoch metrics, the ONNX model, the drift reference."""
        import onnx

        mlflow = self._mlflow
        mlflow.log_params({k: str(v) for k, v in params.items()})
        for row in history:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"},
                               step=int(row["epoch"]))
        mlflow.log_metrics(metrics)
        info = mlflow.onnx.log_model(onnx.load_from_string(onnx_model), name="model")
        self.model_uri = info.model_uri
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "reference.parquet")
            reference.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), artifact_path="drift_reference")
        assert self.run_id is not None
        return self.run_id

    def log_cost(self, spent: Cost) -> None:
        """Log where the training ran (params, a tag) and what it cost (metrics)."""
        mlflow, where = self._mlflow, spent.hardware
        mlflow.log_params({"hardware.cpu_model": where.cpu_model,
                           "hardware.cpu_cores": str(where.cpu_cores),
                           "hardware.gpu": where.gpu or "none"})
        mlflow.log_metrics({"cpu_seconds": spent.cpu_seconds, "gpu_seconds": spent.gpu_seconds,
                            "cost": spent.amount})
        mlflow.set_tags({"tideline/hardware": where.label(),
                         "tideline/cost_currency": spent.currency})

    def register(self, model_name: str, tags: dict[str, str]) -> int:
        """Register the logged ONNX model as a new version; returns the version number."""
        if self.model_uri is None:
            raise RuntimeError("log the final model before registering it")
        mlflow = self._mlflow
        version = mlflow.register_model(self.model_uri, model_name, tags=tags)
        return int(version.version)

    def register_once(self, model_name: str, tags: dict[str, str]) -> RegistryVersion:
        """Register the logged model unless its recipe already has a version; idempotent.

        A run killed after registering but before its memo entry was written trains the
        same weights again on the rerun: the version registered then (tagged with the same
        ``recipe_key`` and ``trained_weights``) is reused instead of adding a duplicate.
        """
        found = find_recipe_version(self.uri, model_name, tags["recipe_key"],
                                    tags["trained_weights"])
        if found is not None:
            return RegistryVersion(version=found, reused=True)
        return RegistryVersion(version=self.register(model_name, tags), reused=False)


def set_aliases(tracking_uri: str, model_name: str, aliases: dict[str, int | None]) -> None:
    """Point registry aliases at versions (``None`` removes the alias)."""
    mlflow = import_mlflow()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    for alias, version in aliases.items():
        if version is None:
            try:
                client.delete_registered_model_alias(model_name, alias)
            except mlflow.exceptions.MlflowException:
                pass
        else:
            client.set_registered_model_alias(model_name, alias, str(version))


def find_version(tracking_uri: str, model_name: str, trained_weights: str) -> int | None:
    """The registry version holding a trained_weights artifact (newest if several)."""
    mlflow = import_mlflow()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.search_model_versions(
        f"name = '{model_name}' and tags.trained_weights = '{trained_weights}'")
    return max((int(v.version) for v in found), default=None)


def find_recipe_version(tracking_uri: str, model_name: str, recipe_key: str,
                        trained_weights: str) -> int | None:
    """The registry version registered for a recipe key and its weights, or None.

    The newest if duplicates exist (registered before registration was idempotent), as
    `find_version`, which deployment uses, picks it.
    """
    mlflow = import_mlflow()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.search_model_versions(
        f"name = '{model_name}' and tags.recipe_key = '{recipe_key}' "
        f"and tags.trained_weights = '{trained_weights}'")
    return max((int(v.version) for v in found), default=None)


def version_tags(tracking_uri: str, model_name: str, version: int) -> dict[str, str]:
    mlflow = import_mlflow()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    return dict(client.get_model_version(model_name, str(version)).tags)


def log_card(tracking_uri: str, experiment_id: str, *, run_name: str, files: dict[str, bytes],
             metrics: dict[str, float], tags: dict[str, str]) -> str:
    mlflow = import_mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                          tags=traced(tags)) as run:
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
                mlflow.log_artifact(str(Path(tmp, name)), artifact_path="model_card")
        return run.info.run_id
