"""deployment: publishes a model that passed the gate (canary or stable) and its edge bundle."""

from typing import TYPE_CHECKING

import dagster as dg

from assets.memo import stage_span
from assets.naming import ins, key
from pipelines import deploy, telemetry
from pipelines.spec import DatasetSpec
from resources.refs import ArtifactRef
from resources.store import ArtifactStoreResource, MlflowResource

if TYPE_CHECKING:
    from pipelines.stages.deployment import PublishResult


def build_deployment(spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.asset(key=key(spec, "deployment"), group_name=spec.name, kinds={"onnx"},
              ins=ins(spec, "trained_weights", "quantized_weights", "model_card"),
              description="Checks the gate verdict stored with the model card; a model that "
                          "passed is appended to the deployment history (canary beside the "
                          "stable model, or stable) and its edge bundle (int8, else the "
                          "smaller of fp16 and fp32) is published. A blocked model is "
                          "recorded as rejected and nothing changes. Head, edge bundles and "
                          "MLflow aliases that a killed run left out of line with the "
                          "history are repaired first (metadata `repaired`).")
    def deployment(context: dg.AssetExecutionContext, trained_weights: ArtifactRef,
                   quantized_weights: ArtifactRef, model_card: ArtifactRef,
                   store: ArtifactStoreResource, mlflow: MlflowResource) -> dg.MaterializeResult:
        from pipelines.stages.deployment import publish
        from pipelines.targets import EdgeBundleTooLarge

        span, trace_id = stage_span(context, spec.name, "deployment")
        # Looked up traced or not: the weights may come from a traced run before this one.
        training_trace = origin_trace(context, spec, trained_weights)
        try:
            with span.activate():
                result = publish(spec, store.get(), tracking_uri=mlflow.tracking_uri,
                                 trained_weights=trained_weights.content_hash,
                                 quantized_weights=quantized_weights.content_hash,
                                 model_card=model_card.content_hash,
                                 actor=f"dagster run {context.run_id}", log=context.log.info,
                                 training_trace=training_trace)
        except BaseException as exc:
            span.end(exc)
            telemetry.flush()
            if isinstance(exc, EdgeBundleTooLarge):
                raise dg.Failure(description=str(exc)) from exc
            raise
        if trace_id:
            span.set({"tideline.outcome": result.outcome, "tideline.model.version": result.version,
                      "tideline.role": result.role, "tideline.training_trace": training_trace})
            span.end()
            telemetry.flush()
        return deployment_result(spec.name, result, trace_id)

    return deployment


def origin_trace(context: dg.AssetExecutionContext, spec: DatasetSpec,
                 trained_weights: ArtifactRef) -> str | None:
    """The trace of the run that trained these weights, as their materialization recorded it.

    ``None`` when that run was not traced, or the latest materialization is of other weights.
    """
    event = context.instance.get_latest_materialization_event(key(spec, "trained_weights"))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    found, trace = meta.get("content_hash"), meta.get("origin_trace")
    if found is None or trace is None or found.value != trained_weights.content_hash:
        return None
    return str(trace.value)


def deployment_result(model: str, result: "PublishResult",
                      trace_id: str | None = None) -> dg.MaterializeResult:
    """The materialization of one deployment step: outcome, versions and where things are.

    ``trace_id`` is the run's trace when it is traced.
    """
    from pipelines.records import DeploymentOutcome

    state, rejected = result.state, result.outcome == "rejected"
    tag = result.lakefs_tag
    outcome = DeploymentOutcome(
        model=model, outcome=result.outcome, version=str(result.version),
        stable_version=deploy.version_label(state.stable),
        canary_version=deploy.version_label(state.canary), history_entry=state.seq,
        # What a killed earlier run had left out of line, now put right.
        repaired="\n".join(result.repaired) or None,
        # A rejected model: model_card raised the alert when it was judged.
        reason=result.reason if rejected else None,
        role=None if rejected else result.role, edge_bundle=None if rejected else result.edge,
        edge_bytes=None if rejected else result.edge_bytes,
        edge_variant=None if rejected else result.edge_variant,
        lakefs_tag=tag.tag if tag and not rejected else None,
        lakefs_commit=tag.commit if tag and not rejected else None)
    metadata = outcome.to_metadata()
    if outcome.edge_bundle:
        metadata["edge_bundle"] = dg.MetadataValue.path(outcome.edge_bundle)
    if trace_id:
        metadata["trace_id"] = trace_id
    return dg.MaterializeResult(metadata=metadata,
                                data_version=dg.DataVersion(f"deployment-{state.seq}"))
