"""The scikit-learn baselines on every card, the gate's lift rule, and how the card shows them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.baselines import BOOSTING, LOGISTIC, fit_baselines
from pipelines.evaluation import metrics
from pipelines.features import LABEL_COLUMN, SPLIT_COLUMN, assign_split
from pipelines.gate import judge
from pipelines.spec import DatasetSpec, GateSpec
from tests.conftest import ADULT_CSV, REPO


@pytest.fixture(scope="module")
def adult():
    """The first 3,000 sample rows, validated and split as the features stage does."""
    from pipelines.ingest import parse_raw
    from pipelines.validation import validate

    raw = yaml.safe_load((REPO / "datasets" / "adult.yaml").read_text())
    raw["source"]["path"] = str(ADULT_CSV)
    spec = DatasetSpec.model_validate(raw)
    lines = ADULT_CSV.read_text().splitlines(keepends=True)[:3001]
    frame = parse_raw("".join(lines).encode(), fmt="csv", file=str(ADULT_CSV),
                      na_values=spec.source.na_values, delimiter=spec.source.delimiter,
                      expected_columns=len(spec.columns) + 1)
    clean = validate(frame, spec).clean
    clean[LABEL_COLUMN] = (clean[spec.target.column].astype(str)
                           == str(spec.target.positive)).astype("float32")
    clean[SPLIT_COLUMN] = assign_split(len(clean), spec.split.seed, spec.split.test_fraction,
                                       spec.split.validation_fraction)
    rows = {s: clean[clean[SPLIT_COLUMN] == s].reset_index(drop=True)
            for s in ("train", "val", "test")}
    return spec, rows


def _fit(spec, rows, test=None):
    return {b.name: b for b in fit_baselines(
        rows["train"], rows["val"], rows["test"] if test is None else test,
        spec.numeric_columns, spec.categorical_columns, LABEL_COLUMN)}


def test_baselines_score_adult_sensibly_and_deterministically(adult):
    spec, rows = adult
    assert rows["test"]["workclass"].isna().any(), "the sample has missing categories"
    first, second = _fit(spec, rows), _fit(spec, rows)
    assert set(first) == {LOGISTIC, BOOSTING}
    y = rows["test"][LABEL_COLUMN].to_numpy(dtype=int)
    for name, fit in first.items():
        assert fit.probabilities.shape == (len(y),)
        assert np.all((fit.probabilities > 0) & (fit.probabilities < 1))
        assert np.array_equal(fit.probabilities, second[name].probabilities), name
        assert fit.fit_seconds > 0
        auc = metrics(y, fit.probabilities)["roc_auc"]
        assert auc > 0.8, f"{name}: test ROC AUC {auc:.4f}"


def test_baselines_are_fitted_on_training_rows_alone(adult):
    """Test rows never shape the fit: other test rows, or unseen categories, change nothing."""
    spec, rows = adult
    base = _fit(spec, rows)
    test = rows["test"].copy()
    extra = test.iloc[:50].copy()
    extra["occupation"] = "Astronaut"  # never seen in training
    extra["age"] = np.nan
    changed = _fit(spec, rows, test=pd.concat([test.iloc[::-1], extra], ignore_index=True))
    n = len(test)
    for name in (LOGISTIC, BOOSTING):
        assert np.array_equal(changed[name].probabilities[:n][::-1], base[name].probabilities)
        assert np.isfinite(changed[name].probabilities[n:]).all()


CANDIDATE = {"roc_auc": 0.90, "accuracy": 0.85, "f1": 0.6, "log_loss": 0.33, "brier": 0.1,
             "ece": 0.03}
BASELINES = {LOGISTIC: CANDIDATE | {"roc_auc": 0.88, "log_loss": 0.36},
             BOOSTING: CANDIDATE | {"roc_auc": 0.91, "log_loss": 0.31}}


def _lift_rules(verdict):
    return [r for r in verdict["rules"] if "baseline" in r["rule"]]


def test_lift_rule_is_off_by_default():
    cfg = GateSpec()
    assert cfg.min_lift_over_baseline == {}
    verdict = judge(cfg, CANDIDATE, None, {}, baselines=BASELINES)
    assert verdict["passed"] and not _lift_rules(verdict)


def test_lift_rule_blocks_a_model_that_does_not_beat_the_best_baseline():
    blocked = judge(GateSpec(min_lift_over_baseline={"roc_auc": 0.0}), CANDIDATE, None, {},
                    baselines=BASELINES)
    assert not blocked["passed"]
    [rule] = _lift_rules(blocked)
    assert not rule["passed"] and "histogram gradient boosting" in rule["rule"]
    assert rule["value"] == pytest.approx(0.90 - 0.91) and rule["limit"] == 0.0

    # A shortfall allowed by a negative lift passes; so does a candidate that beats both.
    assert judge(GateSpec(min_lift_over_baseline={"roc_auc": -0.02}), CANDIDATE, None, {},
                 baselines=BASELINES)["passed"]
    better = CANDIDATE | {"roc_auc": 0.93}
    passed = judge(GateSpec(min_lift_over_baseline={"roc_auc": 0.01}), better, None, {},
                   baselines=BASELINES)
    assert passed["passed"] and _lift_rules(passed)[0]["passed"]


def test_lift_rule_on_a_lower_is_better_metric_uses_the_lowest_baseline():
    verdict = judge(GateSpec(min_lift_over_baseline={"log_loss": 0.0}), CANDIDATE, None, {},
                    baselines=BASELINES)
    [rule] = _lift_rules(verdict)
    assert rule["value"] == pytest.approx(0.31 - 0.33) and not verdict["passed"]


def test_lift_rule_without_baselines_fails_rather_than_passing_silently():
    verdict = judge(GateSpec(min_lift_over_baseline={"roc_auc": 0.0}), CANDIDATE, None, {})
    [rule] = _lift_rules(verdict)
    assert not rule["passed"] and math.isnan(rule["value"])


def _card(timed: bool, dropped: dict[str, str]) -> dict:
    baselines = {name: {"title": title, "settings": "s", "metrics": BASELINES[name]}
                 | ({"fit_seconds": 1.25} if timed else {})
                 for name, title in ((LOGISTIC, "logistic regression"),
                                     (BOOSTING, "histogram gradient boosting"))}
    variant = {"metrics": CANDIDATE, "size_bytes": 100, "parity_max_abs_diff": 0.0}
    return {
        "dataset": "adult", "description": "", "intended_use": "x", "limitations": "y",
        "target": "income", "positive": ">50K", "features": ["age"],
        "rows": {"train": 10, "val": 10, "test": 10, "quarantined": 0},
        "variants": {"fp32": variant, "fp16": variant}, "dropped_variants": dropped,
        "lineage": {}, "fairness": {}, "champion": None, "baselines": baselines,
        "gate": {"passed": True, "rules": [], "compared_with_champion": False},
        "training": {"best_epoch": 1, "epochs_run": 2, "patience": 1, "device": "cpu",
                     "hidden": [8], "architecture": "plr_mlp"},
    }


def test_card_shows_baselines_variants_and_architecture():
    from pipelines.model_card import render_markdown

    stored = render_markdown(_card(timed=False, dropped={"int8": "larger than fp32"}))
    assert "| histogram gradient boosting | 0.9100 |" in stored
    assert "| logistic regression | 0.8800 |" in stored
    assert "| candidate (fp32) | 0.9000 |" in stored
    assert "best baseline (histogram gradient boosting): -0.0100" in stored
    assert "fit seconds" not in stored, "run facts stay out of the stored card"
    assert "published `fp32`, `fp16`" in stored and "`int8` (larger than fp32)" in stored
    assert "Architecture `plr_mlp`" in stored

    shown = render_markdown(_card(timed=True, dropped={}))
    assert "fit seconds" in shown and "1.25" in shown
    assert "Dropped" not in shown


def test_roc_plot_draws_the_baselines():
    from pipelines.model_card import plots

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    reference = {"logistic regression (baseline)": np.clip(y * 0.2 + rng.random(200), 0, 1)}
    alone = plots(y, {"fp32": p})
    both = plots(y, {"fp32": p}, reference)
    assert both["roc.png"] != alone["roc.png"], "the baseline's curve is drawn"
    assert both["calibration.png"] == alone["calibration.png"], "calibration: variants only"
    assert plots(y, {"fp32": p}, reference)["roc.png"] == both["roc.png"], "same bytes"
