"""trained_weights: Optuna search, the final PyTorch fit, MLflow run and registry version."""

from pathlib import Path
from typing import Any

import dagster as dg

from assets.memo import materialize_stage
from assets.naming import ins, key
from pipelines.devices import training_device
from pipelines.recipe import thread_count
from pipelines.spec import DatasetSpec
from resources.refs import ArtifactRef
from resources.runs import host_tags
from resources.store import ArtifactStoreResource, MlflowResource

# On Kubernetes (k8s_job_executor) this step's pod asks for a GPU and more memory.
TRAINING_POD = {"dagster-k8s/config": {
    "container_config": {"resources": {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"}}},
    "pod_spec_config": {"tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}}}


def build_trained_weights(spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.asset(key=key(spec, "trained_weights"), group_name=spec.name,
              ins=ins(spec, "validated_features"), pool="training", op_tags=TRAINING_POD,
              kinds={"pytorch"},
              description="Seeded, deterministic PyTorch tabular model with its preprocessing "
                          "inside, tuned by a resumable Optuna study, exported to ONNX and "
                          "registered in MLflow; a training sample is kept for drift.")
    def trained_weights(context: dg.AssetExecutionContext, validated_features: ArtifactRef,
                        store: ArtifactStoreResource, mlflow: MlflowResource):
        # Names this host on the run, so that a check on another host sharing the instance never
        # judges it, and the run reaper here can release it if its process dies mid-training.
        context.instance.add_run_tags(context.run_id, host_tags())
        dataset, st, device = spec, store.get(), training_device()
        log: dict[str, Any] = {}

        def on_epoch(row: dict[str, Any]) -> None:
            context.log.info(
                f"epoch {row['epoch'] + 1}/{row['epochs']}: train loss {row['train_loss']:.4f}, "
                f"val loss {row['val_loss']:.4f}, val AUC {row['val_auc']:.4f}")

        def on_trial(record: Any) -> None:
            context.log.info(f"trial {record.number}: {record.state}, val loss {record.value}, "
                             f"{record.epochs_run} epochs")

        def compute(key: str):
            import shutil

            from pipelines.stages.training import build_trained_weights
            from pipelines.tracking import TrainingLog

            study = f"trained_weights-{key.split(':')[-1][:32]}"
            if dataset.tuning.n_trials:
                context.log.info(
                    f"Optuna study {study}: {dataset.tuning.n_trials} trials; more workers can "
                    f"join with `python -m cli.tune_worker --study {study}`")
            log["key"] = key
            checkpoints = Path(store.checkpoint_dir("trained_weights", key))
            if (checkpoints / "checkpoint.pt").exists():
                context.log.info(f"resuming the final fit from the checkpoint an interrupted run "
                                 f"left in {checkpoints}")
            with TrainingLog(mlflow.tracking_uri, mlflow.experiment(dataset.name),
                             run_name="trained_weights",
                             tags={"recipe_key": key, "data_hash": validated_features.content_hash,
                                   "dataset_spec": dataset.name, "tideline/model": dataset.name,
                                   "dagster_run_id": context.run_id},
                             on_trial=on_trial) as run:
                log["run"] = run
                result = build_trained_weights(
                    dataset, st, st.get_manifest(validated_features.content_hash),
                    threads=thread_count(), device=device, checkpoint_dir=checkpoints,
                    study_url=mlflow.optuna_storage, study_name=study, on_epoch=on_epoch, log=run)
            # A retried run resumes from the checkpoint; once the result exists it is not needed.
            shutil.rmtree(checkpoints, ignore_errors=True)
            return result

        def register(content_hash: str, result: Any) -> None:
            import json

            from pipelines.tracking import git_commit

            # Once per recipe key: a run killed after registering, before its memo entry, must
            # not leave the registry a duplicate of the same weights when the rerun gets here.
            registered = log["run"].register_once(dataset.name, tags={
                "recipe_key": log["key"], "trained_weights": content_hash,
                "data_hash": validated_features.content_hash, "git_commit": git_commit(),
                "dataset_spec": dataset.name, "device": device, "threads": str(thread_count()),
                "best_params": json.dumps(result.metadata.get("best_params")),
                "stage_config": json.dumps(dataset.stage_config("trained_weights"))})
            if registered.reused:
                context.log.info(f"reusing registry version {registered.version} of "
                                 f"{dataset.name}: it holds these weights for this recipe key")
            result.metadata["registry_version"] = registered.version

        yield from materialize_stage(
            context, asset="trained_weights", model=spec.name, store=st,
            modules=("pipelines.stages.training",),
            config=dataset.stage_config("trained_weights") | {"device": device},
            inputs={"validated_features": validated_features.content_hash}, compute=compute,
            on_saved=register,
        )

    return trained_weights
