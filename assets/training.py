"""trained_weights: Optuna search, the final PyTorch fit, MLflow run and registry version."""

import traceback
from pathlib import Path

import dagster as dg

from assets.memo import materialize_stage
from assets.naming import ins, key
from pipelines.devices import training_device
from pipelines.model_ref import ModelCodeError
from pipelines.recipe import thread_count
from pipelines.spec import DatasetSpec
from pipelines.stages.training import LoggedTraining
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
        st, device = store.get(), training_device()
        training = LoggedTraining(
            spec, st, validated_features.content_hash, tracking_uri=mlflow.tracking_uri,
            experiment=lambda: mlflow.experiment(spec.name),
            optuna_storage=mlflow.optuna_storage,
            checkpoint_dir=lambda recipe: Path(store.checkpoint_dir("trained_weights", recipe)),
            device=device, threads=thread_count(), tags={"dagster_run_id": context.run_id},
            say=context.log.info)
        try:
            yield from materialize_stage(
                context, asset="trained_weights", model=spec.name, store=st,
                modules=("pipelines.stages.training",),
                config=spec.stage_config("trained_weights") | {"device": device},
                inputs={"validated_features": validated_features.content_hash},
                compute=training.compute, on_saved=training.register,
            )
        except ModelCodeError as exc:
            # The user's model code: its traceback goes to the log, the one line to the UI.
            context.log.error("".join(traceback.format_exception(exc.__cause__ or exc)))
            raise dg.Failure(description=str(exc)) from None

    return trained_weights
