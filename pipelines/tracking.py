"""MLflow logging of training runs (imported only on a cache miss: mlflow is slow to import)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def import_mlflow() -> Any:
    """Import mlflow with its usage telemetry off (Tideline sends nothing anywhere)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def log_training(tracking_uri: str, experiment_id: str, *, run_name: str,
                 params: dict[str, Any], history: list[dict[str, Any]],
                 metrics: dict[str, float], onnx_model: bytes, tags: dict[str, str],
                 reference: Any) -> str:
    """Log params, per-epoch metrics, the ONNX model and the drift reference; returns run id."""
    import onnx

    mlflow = import_mlflow()

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        for row in history:
            step = int(row["epoch"])
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=step)
        mlflow.log_metrics(metrics)
        mlflow.onnx.log_model(onnx.load_from_string(onnx_model), name="model")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "reference.parquet")
            reference.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), artifact_path="drift_reference")
        return run.info.run_id


def log_card(tracking_uri: str, experiment_id: str, *, run_name: str, files: dict[str, bytes],
             metrics: dict[str, float], tags: dict[str, str]) -> str:
    mlflow = import_mlflow()

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
                mlflow.log_artifact(str(Path(tmp, name)), artifact_path="model_card")
        return run.info.run_id
