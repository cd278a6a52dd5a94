"""The chain on a real Dagster instance with the real local resources."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import CHAIN, REPO, demo_data, fast_adult_spec, materializations

pytestmark = pytest.mark.slow


def test_demo_chain_then_all_hits(home, chain_factory):

    demo_data(home)
    chain = chain_factory(REPO / "datasets" / "demo.yaml")
    first = chain.run()
    assert first.success
    m1 = materializations(first)
    assert list(m1) == [*CHAIN, "deployment"]
    assert m1["deployment"]["outcome"] == "deployed" and m1["deployment"]["role"] == "stable"
    for asset in CHAIN:
        meta = m1[asset]
        assert meta["cache"] == "miss", asset
        assert meta["recipe_key"].startswith("b3:") and meta["content_hash"].startswith("b3:")
        event = chain.latest(asset)
        assert event.asset_materialization.tags["dagster/data_version"] == meta["content_hash"]
    observed = chain.instance.get_latest_data_version_record(chain.key("raw_source"))
    assert observed is not None
    second = chain.run()
    m2 = materializations(second)
    assert [m2[a]["cache"] for a in CHAIN] == ["hit"] * len(CHAIN)
    assert {a: m2[a]["content_hash"] for a in CHAIN} == {a: m1[a]["content_hash"] for a in CHAIN}
    assert m2["deployment"]["outcome"] == "unchanged"
    # The model card is in the store, with plots, and was logged to MLflow with the model.
    store = chain.store()
    card = store.get_manifest(m1["model_card"]["content_hash"])
    md = store.get_bytes(card.files["card.md"]).decode()
    assert "## Metrics on held-out test rows" in md and "int8" in md
    assert store.get_bytes(card.files["roc.png"]).startswith(b"\x89PNG")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(m1["trained_weights"]["mlflow_run_id"])
    assert run.data.tags["recipe_key"] == m1["trained_weights"]["recipe_key"]
    assert "best_val_auc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "drift_reference" in artifacts
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert models and models[0].source_run_id == run.info.run_id
    # The demo spec tunes: every trial is a nested run under the training run.
    trials = client.search_runs([run.info.experiment_id],
                                filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(trials) == m1["trained_weights"]["trials_complete"] + m1["trained_weights"][
        "trials_pruned"] == 6
    version = client.get_model_version("breast_cancer", "1")
    assert version.tags["trained_weights"] == m1["trained_weights"]["content_hash"]
    assert version.tags["recipe_key"] == m1["trained_weights"]["recipe_key"]
    assert {"git_commit", "data_hash", "dataset_spec", "best_params"} <= set(version.tags)
    assert int(client.get_model_version_by_alias("breast_cancer", "champion").version) == 1


def test_two_chains_from_empty_stores_give_identical_bytes_for_every_asset(tmp_path,
                                                                           chain_factory):
    hashes, weights, cards = [], [], []
    for name in ("a", "b"):
        state = tmp_path / name
        demo_data(state)
        chain = chain_factory(REPO / "datasets" / "demo.yaml", state)
        result = chain.run()
        assert result.success
        metas = materializations(result)
        assert {metas[a]["cache"] for a in CHAIN} == {"miss"}
        hashes.append({a: metas[a]["content_hash"] for a in CHAIN})
        manifest = chain.store().get_manifest(metas["trained_weights"]["content_hash"])
        weights.append(chain.store().get_bytes(manifest.files["weights.safetensors"]))
        cards.append(metas["model_card"])
    assert hashes[0] == hashes[1]  # the model card included: run facts are metadata only
    assert weights[0] == weights[1]
    # The card shown for each run still reports that run's latency.
    assert all(set(c["latency_ms"]) == {"fp32", "int8", "fp16"} for c in cards)
    assert "ms @ batch 1" in cards[0]["model_card"]


def test_adult_early_cutoff_data_change_and_parity(tmp_path, adult_sample, chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    chain = chain_factory(fast_adult_spec(tmp_path, source))
    first = materializations(chain.run())
    assert list(first) == [*CHAIN, "deployment"]

    # fnlwgt is not in the spec: the snapshot changes, validated features do not.
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    frame["fnlwgt"] = (frame["fnlwgt"].astype(int) + 1).astype(str)
    frame.to_csv(source, index=False)
    second = materializations(chain.run())
    assert second["raw_data"]["cache"] == "miss"
    assert second["raw_data"]["content_hash"] != first["raw_data"]["content_hash"]
    assert second["validated_features"]["cache"] == "miss"
    assert second["validated_features"]["content_hash"] == first["validated_features"][
        "content_hash"]
    assert [second[a]["cache"] for a in CHAIN[2:]] == ["hit"] * 3

    # A change to a used column recomputes everything downstream of it.
    frame = frame.reset_index(drop=True)
    frame.loc[0, "age"] = str(int(frame.loc[0, "age"]) + 1)
    frame.to_csv(source, index=False)
    third = materializations(chain.run())
    assert [third[a]["cache"] for a in CHAIN] == ["miss"] * 5

    # Quantized variants: parity within tolerance, int8 independent of the batch.
    from pipelines.features import SPLIT_COLUMN, onnx_feeds
    from pipelines.quantize import predict, session

    store = chain.store()
    variants = store.get_manifest(third["quantized_weights"]["content_hash"])
    assert third["quantized_weights"]["int8_max_abs_diff"] <= 0.05
    assert third["quantized_weights"]["fp16_max_abs_diff"] <= 0.01
    features = store.get_manifest(third["validated_features"]["content_hash"])
    from pipelines.artifacts import read_frame, read_json

    rows = read_frame(store, features, "features")
    test = rows[rows[SPLIT_COLUMN] == "test"].head(64)
    params = read_json(store, variants, "preprocess.json")
    assert params["categorical"], "Adult exercises the categorical path of the graph"
    sess = session(store.get_bytes(variants.files["model_int8.onnx"]))
    feeds = onnx_feeds(test, params)
    together = predict(sess, feeds)
    alone = np.concatenate([predict(sess, {k: v[i:i + 1] for k, v in feeds.items()})
                            for i in range(len(test))])
    np.testing.assert_array_equal(together, alone)
