"""<model>_drift_sensor with build_sensor_context, an ephemeral instance and an injected clock."""

import json

import dagster as dg
import pytest

from sensors.drift import build_drift_sensor

K = 2
COOLDOWN_S = 3600
MODEL = "adult"


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def world():
    instance = dg.DagsterInstance.ephemeral()
    clock = Clock()
    job = dg.define_asset_job(f"{MODEL}_retrain_job",
                              selection=[dg.AssetKey([MODEL, "drift_report"])])
    sensor = build_drift_sensor(MODEL, job, consecutive=K, cooldown_s=COOLDOWN_S, clock=clock)
    assert sensor.name == f"{MODEL}_drift_sensor"
    state = {"cursor": None}

    def report(batch: str, score: float, model: str = MODEL):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            [model, "drift_report"], metadata={
                "batch": batch, "drift_score": score, "drift_threshold": 0.3,
                "drifted": score >= 0.3, "drifted_columns": ["age"] if score >= 0.3 else []}))

    def performance(content_hash: str, below: bool, model: str = MODEL):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            [model, "production_performance"], metadata={
                "content_hash": content_hash, "below_floor": below,
                "floor_failures": ["roc_auc 0.61 < 0.7"] if below else []}))

    def tick():
        context = dg.build_sensor_context(instance=instance, cursor=state["cursor"])
        result = sensor(context)
        state["cursor"] = result.cursor
        return result

    return report, performance, tick, clock, state


def test_clean_then_drifted_batches(world):
    report, _, tick, clock, state = world
    result = tick()
    assert not result.run_requests and result.skip_reason.skip_message == "no drift report yet"

    report("b3:clean", 0.05)
    result = tick()
    assert not result.run_requests and "is clean" in result.skip_reason.skip_message

    report("b3:drift1", 0.6)
    result = tick()
    assert not result.run_requests
    assert "drifted batch 1 of 2 consecutive" in result.skip_reason.skip_message

    report("b3:drift2", 0.7)
    result = tick()
    assert [r.run_key for r in result.run_requests] == ["drift-b3:drift2"]
    assert "2 consecutive batches" in result.run_requests[0].tags["tideline/trigger"]
    assert result.run_requests[0].tags["tideline/model"] == MODEL
    assert json.loads(state["cursor"])["last_request"] == clock.now

    # The same batch again: no new request.
    clock.now += 10
    result = tick()
    assert not result.run_requests and "no new production batch" in result.skip_reason.skip_message


def test_cooldown_holds_then_releases(world):
    report, _, tick, clock, _ = world
    for batch in ("b3:d1", "b3:d2"):
        report(batch, 0.9)
        result = tick()
    assert len(result.run_requests) == 1
    for batch in ("b3:d3", "b3:d4"):
        clock.now += 60
        report(batch, 0.9)
        result = tick()
    assert not result.run_requests and "cooldown holds" in result.skip_reason.skip_message
    clock.now += COOLDOWN_S
    report("b3:d5", 0.9)
    result = tick()
    assert [r.run_key for r in result.run_requests] == ["drift-b3:d5"]


def test_performance_below_floor_requests_once(world):
    report, performance, tick, clock, _ = world
    report("b3:clean", 0.0)
    tick()
    performance("b3:perf1", below=True)
    result = tick()
    assert [r.run_key for r in result.run_requests] == ["performance-b3:perf1"]
    assert "below the floor" in result.run_requests[0].tags["tideline/trigger"]
    clock.now += 2 * COOLDOWN_S
    result = tick()
    assert not result.run_requests, "one request per performance result"


def test_another_models_reports_never_retrain_this_one(world):
    report, performance, tick, _, _ = world
    for batch in ("b3:d1", "b3:d2", "b3:d3"):
        report(batch, 0.9, model="breast_cancer")
        result = tick()
        assert not result.run_requests
        assert result.skip_reason.skip_message == "no drift report yet"
    report("b3:clean", 0.0)
    tick()
    performance("b3:perf1", below=True, model="breast_cancer")
    result = tick()
    assert not result.run_requests and "no new production batch" in result.skip_reason.skip_message
