"""trained_weights: the PyTorch model, checkpointed per epoch and logged to MLflow."""

from pathlib import Path
from typing import Any

import dagster as dg

from assets.memo import materialize_stage
from pipelines.devices import training_device
from pipelines.recipe import thread_count
from resources.refs import ArtifactRef
from resources.store import ArtifactStoreResource, DatasetSpecResource, MlflowResource


@dg.asset(group_name="model", description="Seeded, deterministic PyTorch tabular model with "
          "its preprocessing inside, exported to ONNX; a training sample is kept for drift.")
def trained_weights(context: dg.AssetExecutionContext, validated_features: ArtifactRef,
                    spec: DatasetSpecResource, store: ArtifactStoreResource,
                    mlflow: MlflowResource):
    dataset, st, device = spec.get(), store.get(), training_device()

    def on_epoch(row: dict[str, Any]) -> None:
        context.log.info(
            f"epoch {row['epoch'] + 1}/{row['epochs']}: train loss {row['train_loss']:.4f}, "
            f"val loss {row['val_loss']:.4f}, val AUC {row['val_auc']:.4f}")

    def compute(key: str):
        import shutil

        from pipelines.stages.training import build_trained_weights
        from pipelines.tracking import log_training

        def log_run(run: dict[str, Any]) -> str:
            return log_training(
                mlflow.tracking_uri, mlflow.experiment(dataset.name), run_name="trained_weights",
                tags={"recipe_key": key, "data_hash": validated_features.content_hash,
                      "dataset_spec": dataset.name, "dagster_run_id": context.run_id},
                **run)

        checkpoints = Path(store.checkpoint_dir("trained_weights", key))
        result = build_trained_weights(
            dataset, st, st.get_manifest(validated_features.content_hash),
            threads=thread_count(), device=device, checkpoint_dir=checkpoints,
            on_epoch=on_epoch, log_run=log_run)
        # A retried run resumes from the checkpoint; once the result exists it is not needed.
        shutil.rmtree(checkpoints, ignore_errors=True)
        return result

    yield from materialize_stage(
        context, asset="trained_weights", store=st, modules=("pipelines.stages.training",),
        config=dataset.stage_config("trained_weights") | {"device": device},
        inputs={"validated_features": validated_features.content_hash}, compute=compute,
    )
