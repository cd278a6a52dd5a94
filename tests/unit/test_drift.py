"""Drift tests pinned in the spec: the fast path agrees with Evidently; alerts reach a webhook."""

import time

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines import drift
from pipelines.alerts import send_alert
from pipelines.spec import DatasetSpec
from tests.conftest import ADULT_CSV, REPO


def adult_spec(monitoring: dict) -> DatasetSpec:
    raw = yaml.safe_load((REPO / "datasets" / "adult.yaml").read_text())
    raw["source"]["path"] = str(ADULT_CSV)
    raw["monitoring"] = monitoring
    return DatasetSpec.model_validate(raw)


@pytest.fixture(scope="module")
def frames():
    df = pd.read_csv(ADULT_CSV, dtype=str, keep_default_na=False, na_values=["?"])
    reference = df.sample(1500, random_state=0)
    current = df.sample(2500, random_state=1).copy()
    # A recalibrated measurement (scaled by 1.3) and a shifted category mix.
    current["age"] = (pd.to_numeric(current["age"]) * 1.3).round().astype(int).astype(str)
    current.loc[current.index[:600], "workclass"] = "Self-emp-inc"
    return reference, current


@pytest.mark.parametrize("numeric,categorical", [
    ({"method": "wasserstein", "threshold": 0.1}, {"method": "jensenshannon", "threshold": 0.1}),
    ({"method": "ks", "threshold": 0.05}, {"method": "chisquare", "threshold": 0.05}),
    ({"method": "psi", "threshold": 0.1}, {"method": "psi", "threshold": 0.1}),
])
def test_fast_path_agrees_with_evidently(frames, numeric, categorical):
    reference, current = frames
    spec = adult_spec({"numeric": numeric, "categorical": categorical,
                       "columns": {"age": {"weight": 3.0}}})
    tests = drift.column_tests(spec)
    fast = drift.fast_path(reference, current, tests)
    evidently, html = drift.evidently_report(reference, current, tests)
    assert b"<html" in html[:200] and len(html) > 10_000
    for f, e in zip(fast, evidently):
        assert f["column"] == e["column"] and f["method"] == e["method"]
        assert f["drifted"] == e["drifted"], f
        assert np.isclose(f["value"], e["value"], rtol=1e-6, atol=1e-9), (f, e)
    by_column = {r["column"]: r for r in fast}
    assert by_column["age"]["drifted"] and by_column["workclass"]["drifted"]
    weights = sum(r["weight"] for r in fast)
    expected = sum(r["weight"] for r in fast if r["drifted"]) / weights
    assert drift.drift_score(fast) == pytest.approx(expected)


def test_same_data_does_not_drift(frames):
    reference, _ = frames
    spec = adult_spec({})
    rows = drift.fast_path(reference, reference.sample(frac=1.0, random_state=3),
                           drift.column_tests(spec))
    assert drift.drift_score(rows) == 0.0


def test_alert_reaches_a_real_webhook_receiver():
    from tests.serving_support import Receiver

    receiver = Receiver()
    try:
        assert send_alert(receiver.url, "drift", "adult", "drift score 0.62", {"batch": "b3:x"})
    finally:
        receiver.server.shutdown()
    assert receiver.received[0]["event"] == "drift"
    assert receiver.received[0]["details"] == {"batch": "b3:x"}
    # An unreachable receiver is logged, not raised, and gives up within its budget.
    start = time.monotonic()
    assert send_alert("http://127.0.0.1:9/none", "drift", "adult", "x", budget_s=1.0) is False
    assert time.monotonic() - start < 10


def test_alert_delivery_retries_a_receiver_that_is_briefly_down():
    from tests.serving_support import Receiver

    receiver = Receiver(fail_first=2)
    try:
        assert send_alert(receiver.url, "gate_blocked", "adult", "auc below floor")
    finally:
        receiver.server.shutdown()
    assert len(receiver.attempts) == 3  # two 503s, then delivered once
    assert receiver.events() == ["gate_blocked"]


def test_wasserstein_matches_scipy_with_ties_and_either_order():
    from scipy import stats

    rng = np.random.default_rng(1)
    for n, m in [(1000, 5000), (5000, 300), (2000, 2000)]:
        u = rng.normal(size=n).round(1)  # rounded: many tied values
        v = rng.normal(0.2, 1.3, m).round(1)
        expected = stats.wasserstein_distance(u, v)
        assert drift._wasserstein(u, v) == pytest.approx(expected, rel=1e-12)
        assert drift._wasserstein(v, u) == pytest.approx(expected, rel=1e-12)
