"""The chain's `pipelines` functions called from a plain script: the baseline for Dagster.

Does the same work as `<model>_training_job` (recipe keys, store writes, MLflow logging), with
no Dagster. Run as ``python -m bench.plain_chain`` with TIDELINE_HOME set.
"""

from __future__ import annotations

from pathlib import Path


def main() -> None:
    from pipelines.artifacts import save_result
    from pipelines.catalog import selected_spec
    from pipelines.devices import training_device
    from pipelines.ingest import StatCache, local_source_path
    from pipelines.paths import mlflow_uri, optuna_url, state_dir
    from pipelines.recipe import code_fingerprint, recipe_key, thread_count
    from pipelines.stages.features import build_features
    from pipelines.stages.model_card import build_card
    from pipelines.stages.quantization import build_variants
    from pipelines.stages.raw import snapshot_source
    from pipelines.stages.training import build_trained_weights
    from pipelines.store import ArtifactStore
    from pipelines.tracking import TrainingLog, log_card

    state, spec = state_dir(), selected_spec()
    store = ArtifactStore(state / "store")
    uri = mlflow_uri(state)

    def stage(asset, module, config, inputs, compute, on_saved=None):
        key = recipe_key(asset, code_fingerprint(module), config, inputs)
        record = store.lookup(asset, key)
        if record is None:
            result = compute(key)
            manifest = save_result(store, result)
            if on_saved:
                on_saved(manifest.content_hash)
            record = {"content_hash": manifest.content_hash, "metadata": {}, "checks": []}
            store.record(asset, key, record)
        return record["content_hash"]

    def experiment():
        from pipelines.tracking import import_mlflow

        mlflow = import_mlflow()
        mlflow.set_tracking_uri(uri)
        exp = mlflow.get_experiment_by_name(spec.name)
        return exp.experiment_id if exp else mlflow.create_experiment(
            spec.name, artifact_location=str(state / "mlflow" / "artifacts"))

    source_hash, _ = StatCache(state / "scratch" / "stat.db").file_hash(
        local_source_path(spec.source.path))
    raw = stage("raw_data", "pipelines.stages.raw", {"format": spec.source.resolved_format},
                {"source": source_hash}, lambda k: snapshot_source(spec, store))
    feats = stage("validated_features", "pipelines.stages.features",
                  spec.stage_config("validated_features"), {"raw_data": raw},
                  lambda k: build_features(spec, store, store.get_manifest(raw)))
    device = training_device()

    logs = {}

    def train(key):
        with TrainingLog(uri, experiment(), "trained_weights", {"recipe_key": key}) as log:
            result = build_trained_weights(
                spec, store, store.get_manifest(feats), threads=thread_count(), device=device,
                checkpoint_dir=Path(state / "scratch" / "checkpoints" / key.split(":")[-1]),
                study_url=optuna_url(state), study_name=key.split(":")[-1][:32], log=log)
        logs["run"], logs["key"] = log, key
        return result

    weights = stage("trained_weights", "pipelines.stages.training",
                    spec.stage_config("trained_weights") | {"device": device},
                    {"validated_features": feats}, train,
                    on_saved=lambda h: logs["run"].register(
                        spec.name, {"recipe_key": logs["key"], "trained_weights": h}))
    variants = stage("quantized_weights", "pipelines.stages.quantization",
                     spec.stage_config("quantized_weights"),
                     {"validated_features": feats, "trained_weights": weights},
                     lambda k: build_variants(spec, store, store.get_manifest(feats),
                                              store.get_manifest(weights)))
    refs = {"validated_features": feats, "trained_weights": weights,
            "quantized_weights": variants}

    def card(key):
        result = build_card(spec, store, *(store.get_manifest(h) for h in refs.values()),
                            lineage=refs, champion=baseline(store, spec.name, weights))
        log_card(uri, experiment(), run_name="model_card",
                 files={k: v for k, v in result.files.items() if k != "card.json"},
                 metrics={k: v for k, v in result.metadata.items() if isinstance(v, float)},
                 tags={"recipe_key": key})
        return result

    from pipelines.registry import baseline
    from pipelines.stages.deployment import publish

    champion = baseline(store, spec.name, weights)
    refs_in = refs | {"champion": champion.quantized_weights if champion else "none"}
    card_hash = stage("model_card", "pipelines.stages.model_card",
                      spec.stage_config("model_card"), refs_in, card)
    publish(spec, store, tracking_uri=uri, trained_weights=weights,
            quantized_weights=variants, model_card=card_hash)

if __name__ == "__main__":
    main()
