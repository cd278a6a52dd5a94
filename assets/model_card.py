"""model_card: metrics, fairness, champion comparison and the deploy gate (a blocking check)."""

import dagster as dg

from assets.memo import materialize_stage
from assets.naming import ins, key
from pipelines.artifacts import PathLink
from pipelines.hashing import hash_bytes
from pipelines.registry import baseline
from pipelines.spec import DatasetSpec
from resources.refs import ArtifactRef
from resources.store import ArtifactStoreResource, MlflowResource

INPUTS = ("validated_features", "trained_weights", "quantized_weights")


def build_model_card(spec: DatasetSpec) -> dg.AssetsDefinition:
    gate = dg.AssetCheckSpec(
        "deploy_gate", asset=key(spec, "model_card"), blocking=True,
        description="Quality floors, no regression beyond tolerance against the champion, "
                    "and fairness limits from the dataset spec.")

    @dg.asset(key=key(spec, "model_card"), group_name=spec.name, ins=ins(spec, *INPUTS),
              check_specs=[gate],
              description="The model card (Markdown and HTML with ROC, calibration and "
                          "per-group plots), logged to MLflow; its check is the deploy gate.")
    def model_card(context: dg.AssetExecutionContext, validated_features: ArtifactRef,
                   trained_weights: ArtifactRef, quantized_weights: ArtifactRef,
                   store: ArtifactStoreResource, mlflow: MlflowResource):
        st = store.get()
        refs = {"validated_features": validated_features, "trained_weights": trained_weights,
                "quantized_weights": quantized_weights}
        champion = baseline(st, spec.name, trained_weights.content_hash)
        raw = context.instance.get_latest_materialization_event(key(spec, "raw_data"))
        raw_hash = raw.asset_materialization.metadata.get("content_hash") if (
            raw and raw.asset_materialization) else None

        def compute(recipe: str):
            from pipelines.stages.model_card import build_card, recorded_cost
            from pipelines.tracking import log_card

            # What training these weights cost, as their materialization recorded it.
            trained = context.instance.get_latest_materialization_event(
                key(spec, "trained_weights"))
            trained_meta = {k: v.value for k, v in trained.asset_materialization.metadata.items()
                            } if trained and trained.asset_materialization else {}
            result = build_card(spec, st, *(st.get_manifest(r.content_hash)
                                            for r in refs.values()),
                                lineage={name: r.content_hash for name, r in refs.items()},
                                champion=champion, on_progress=context.log.info,
                                raw_data=raw_hash.value if raw_hash else None,
                                training_cost=recorded_cost(trained_meta,
                                                            trained_weights.content_hash))
            html = result.files["card.html"]
            result.metadata["card_html"] = PathLink(st.object_url(hash_bytes(html)))
            result.metadata["mlflow_run_id"] = log_card(
                mlflow.tracking_uri, mlflow.experiment(spec.name), run_name="model_card",
                files={k: v for k, v in result.files.items() if k != "card.json"},
                metrics={k: v for k, v in result.metadata.items() if isinstance(v, float)},
                tags={"recipe_key": recipe, "trained_weights": trained_weights.content_hash,
                      "dataset_spec": spec.name, "tideline/model": spec.name,
                      "dagster_run_id": context.run_id})
            return result

        def alert_if_blocked(content_hash: str, result) -> None:
            if result.metadata["gate"] == "passed":
                return
            from pipelines.alerts import send_alert

            send_alert(spec.monitoring.alert_webhook, "gate_blocked", spec.name,
                       f"the deploy gate blocked the new model: {result.checks[0]['rule']}",
                       {"model_card": content_hash,
                        "trained_weights": trained_weights.content_hash})

        yield from materialize_stage(
            context, asset="model_card", model=spec.name, store=st,
            modules=("pipelines.stages.model_card",), config=spec.stage_config("model_card"),
            inputs={name: r.content_hash for name, r in refs.items()}
            | {"champion": champion.quantized_weights if champion else "none"},
            compute=compute, on_saved=alert_if_blocked,
        )

    return model_card
