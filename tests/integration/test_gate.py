"""The deploy gate on UCI Adult: fairness with intervals, and worse candidates blocked."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import fast_adult_spec, materializations

pytestmark = pytest.mark.slow

GATE = {"min_metrics": {"roc_auc": 0.75}, "tolerances": {"roc_auc": 0.01, "log_loss": 0.03},
        "fairness": {"demographic_parity_difference": {"absolute": 0.6, "relative": 0.1},
                     "equalized_odds_difference": {"absolute": 0.9}},
        "min_group_size": 20, "bootstrap": 50}


def champion_version(home, chain):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    from pipelines.deploy import current

    return (int(client.get_model_version_by_alias("adult", "champion").version),
            current(chain.store(), "adult").stable.version)


def card_json(chain, meta):
    store = chain.store()
    manifest = store.get_manifest(meta["content_hash"])
    return json.loads(store.get_bytes(manifest.files["card.json"]))


def gate_result(result):
    return [e.asset_check_evaluation_data.passed for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.asset_check_evaluation_data.check_name == "deploy_gate"]


def test_gate_blocks_worse_candidates_and_keeps_the_champion(tmp_path, home, adult_sample,
                                                             chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    spec = fast_adult_spec(tmp_path, source, gate=GATE, training__epochs=6)
    chain = chain_factory(spec)
    first = chain.run()
    meta = materializations(first)
    assert meta["model_card"]["gate"] == "passed" and gate_result(first) == [True]
    card = card_json(chain, meta["model_card"])
    assert not card["gate"]["compared_with_champion"]
    for column in ("sex", "race"):
        fair = card["fairness"][column]
        low, high = fair["intervals"]["demographic_parity_difference"]
        assert low <= fair["differences"]["demographic_parity_difference"] <= high
        assert all(0 <= g["selection_rate"] <= 1 for g in fair["groups"].values())
    assert not card["fairness"]["race"]["groups"]["Other"]["gated"], "small groups not gated"
    md = chain.store().get_bytes(chain.store().get_manifest(
        meta["model_card"]["content_hash"]).files["card.md"]).decode()
    assert "**PASSED**" in md and "### sex" in md and "95% bootstrap CI" in md
    assert champion_version(home, chain) == (1, 1)

    # Grossly worse: labels shuffled.
    frame = pd.read_csv(adult_sample, dtype=str, keep_default_na=False).reset_index(drop=True)
    shuffled = frame.copy()
    shuffled["income-per-year"] = np.random.default_rng(0).permutation(
        frame["income-per-year"].to_numpy())
    shuffled.to_csv(source, index=False)
    gross = chain.run()
    gross_meta = materializations(gross)["model_card"]
    assert gross_meta["gate"] == "blocked" and gate_result(gross) == [False]
    failed = [r["rule"] for r in card_json(chain, gross_meta)["gate"]["rules"] if not r["passed"]]
    assert any("roc_auc ≥" in r for r in failed), failed
    assert champion_version(home, chain) == (1, 1)

    # Subtly worse: a quarter of the training rows' labels flipped (test rows untouched).
    from pipelines.features import assign_split

    noisy = frame.copy()
    split = assign_split(len(noisy), 11, 0.2, 0.1)
    rng = np.random.default_rng(1)
    flip = (split == "train") & (rng.random(len(noisy)) < 0.25)
    noisy.loc[flip, "income-per-year"] = noisy.loc[flip, "income-per-year"].map(
        {"<=50K": ">50K", ">50K": "<=50K"})
    noisy.to_csv(source, index=False)
    subtle = chain.run()
    subtle_meta = materializations(subtle)["model_card"]
    card = card_json(chain, subtle_meta)
    failed = [r["rule"] for r in card["gate"]["rules"] if not r["passed"]]
    drop = card["champion"]["metrics"]["roc_auc"] - card["variants"]["fp32"]["metrics"]["roc_auc"]
    print("subtle candidate: AUC drop", drop, "failed rules", failed)
    assert subtle_meta["gate"] == "blocked"
    assert failed and all("champion" in r for r in failed), failed
    assert card["variants"]["fp32"]["metrics"]["roc_auc"] >= GATE["min_metrics"]["roc_auc"]
    assert champion_version(home, chain) == (1, 1)


def test_schema_change_cannot_pass_silently(tmp_path, home, adult_sample, chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    spec = fast_adult_spec(tmp_path, source, gate=GATE)
    chain = chain_factory(spec)
    assert materializations(chain.run())["model_card"]["gate"] == "passed"
    import yaml

    raw = yaml.safe_load(spec.read_text())
    raw["columns"].pop("capital-gain")
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    meta = materializations(chain.run())["model_card"]
    assert meta["gate"] == "blocked"
    rules = [r["rule"] for r in card_json(chain, meta)["gate"]["rules"] if not r["passed"]]
    assert any("capital-gain" in r for r in rules), rules


def test_baselines_on_the_card_and_the_lift_rule(tmp_path, home, adult_sample, chain_factory):
    """Every card scores the scikit-learn baselines on its rows; the lift rule can block."""
    import yaml

    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    spec = fast_adult_spec(tmp_path, source, gate=GATE | {"min_lift_over_baseline":
                                                          {"roc_auc": -0.5}})
    chain = chain_factory(spec)
    first = materializations(chain.run())
    assert first["model_card"]["gate"] == "passed"
    card = card_json(chain, first["model_card"])
    assert set(card["baselines"]) == {"logistic_regression", "hist_gradient_boosting"}
    for name, baseline in card["baselines"].items():
        assert baseline["metrics"]["rows"] == card["variants"]["fp32"]["metrics"]["rows"]
        assert baseline["metrics"]["roc_auc"] > 0.8, name
        assert "fit_seconds" not in baseline, "run facts stay out of the stored card"
        assert first["model_card"]["baselines"][name]["fit_seconds"] >= 0
    [lift] = [r for r in card["gate"]["rules"] if "best baseline" in r["rule"]]
    best = max(b["metrics"]["roc_auc"] for b in card["baselines"].values())
    assert lift["passed"] and lift["value"] == pytest.approx(
        card["variants"]["fp32"]["metrics"]["roc_auc"] - best)
    files = chain.store().get_manifest(first["model_card"]["content_hash"]).files
    md = chain.store().get_bytes(files["card.md"]).decode()
    assert "| histogram gradient boosting |" in md and "| logistic regression |" in md
    assert "Variants: published `fp32`" in md and "Architecture `" in md

    # A lift no model can reach blocks it; only the card re-keys (no stage retrains).
    raw = yaml.safe_load(spec.read_text())
    raw["gate"]["min_lift_over_baseline"] = {"roc_auc": 0.2}
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    second = chain.run()
    meta = materializations(second)
    assert meta["trained_weights"]["cache"] == "hit" and meta["model_card"]["cache"] == "miss"
    assert meta["model_card"]["gate"] == "blocked" and gate_result(second) == [False]
    failed = [r["rule"] for r in card_json(chain, meta["model_card"])["gate"]["rules"]
              if not r["passed"]]
    assert failed and all("best baseline" in r for r in failed), failed
    assert champion_version(home, chain) == (1, 1)

    # Memoized with the card: the same inputs again re-train no baseline.
    assert materializations(chain.run())["model_card"]["cache"] == "hit"
