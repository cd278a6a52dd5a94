"""A chain run records what training cost (run metadata, MLflow, the card shown for the run),
and the chain exporter turns the instance's materializations into Prometheus metrics."""

import os

import pytest

from pipelines.cost import cpu_model
from tests.conftest import CHAIN, fast_adult_spec, materializations
from tests.metrics_support import families, sample_value

pytestmark = pytest.mark.slow

GATE = {"min_metrics": {"roc_auc": 0.6}}


def test_training_cost_reaches_metadata_mlflow_the_card_and_the_exporter(
        tmp_path, home, adult_sample, chain_factory, monkeypatch):
    import mlflow
    from prometheus_client import generate_latest

    from cli.chain_metrics import registry_for

    monkeypatch.delenv("TIDELINE_PRICE_CPU_CORE_HOUR", raising=False)
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    # 3,600 a core-hour: a CPU second costs 1.
    spec = fast_adult_spec(tmp_path, source, gate=GATE, cost={"cpu_core_hour": 3600.0})
    chain = chain_factory(spec)
    first = chain.run()
    assert first.success
    meta = materializations(first)
    spent = meta["trained_weights"]["cost"]
    assert spent["hardware"] == {"cpu_model": cpu_model(), "cpu_cores": os.cpu_count(),
                                 "gpu": None}
    assert spent["cpu_seconds"] > 0 and spent["amount"] == pytest.approx(spent["cpu_seconds"],
                                                                         abs=1e-3)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(meta["trained_weights"]["mlflow_run_id"]).data
    assert run.params["hardware.cpu_model"] == cpu_model()
    assert run.params["hardware.cpu_cores"] == str(os.cpu_count())
    assert run.params["hardware.gpu"] == "none"
    assert run.metrics["cost"] == pytest.approx(spent["amount"], abs=1e-5)
    assert run.metrics["cpu_seconds"] == pytest.approx(spent["cpu_seconds"], abs=1e-3)
    assert run.tags["tideline/hardware"] == f"cpu: {cpu_model()}"

    card = meta["model_card"]
    assert card["training_cost"] == spent["amount"]
    assert all(b["cost"] > 0 for b in card["baselines"].values())
    shown = card["model_card"].split("## Cost", 1)[1].split("\n## ", 1)[0]
    assert f"| training (trained_weights) | {cpu_model()}, {os.cpu_count()} cores |" in shown
    assert "(baseline fit, 1 thread)" in shown and "3600 USD per CPU core-hour" in shown
    stored = chain.store().get_manifest(card["content_hash"])
    assert "## Cost" not in chain.store().get_bytes(stored.files["card.md"]).decode()

    exported = generate_latest(registry_for(chain.instance)).decode()
    model = chain.model
    assert sample_value(exported, "tideline_chain_training_cost", model=model) == \
        spent["amount"]
    assert sample_value(exported, "tideline_chain_gate_passed", model=model) == 1.0
    assert sample_value(exported, "tideline_chain_cache_hit_ratio", model=model) == 0.0
    for stage in CHAIN:
        assert sample_value(exported, "tideline_chain_stage_seconds", model=model,
                            stage=stage) == meta[stage]["seconds"]

    assert chain.run().success  # every stage a hit now
    exported = generate_latest(registry_for(chain.instance)).decode()
    assert sample_value(exported, "tideline_chain_cache_hit_ratio", model=model) == 1.0
    for cache in ("hit", "miss"):
        assert sample_value(exported, "tideline_chain_materializations_total", model=model,
                            stage="trained_weights", cache=cache) == 1.0
    assert sample_value(exported, "tideline_chain_gate_verdicts_total", model=model,
                        verdict="passed") == 2.0
    # A hit re-emits the metadata its miss recorded: the cost of making those weights.
    assert sample_value(exported, "tideline_chain_training_cost", model=model) == \
        spent["amount"]
    assert all(name.startswith("tideline_chain_") for name in families(exported))
