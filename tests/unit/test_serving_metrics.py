"""The service's metrics: Prometheus naming, and what inference costs by model and hardware."""

import os
import subprocess
import sys

import pytest

from pipelines.cost import hardware
from tests.conftest import REPO
from tests.metrics_support import MODEL, families, model_bytes, sample_value, served

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

REQUESTS, ROWS = 12, 5
RECORDS = [{"age": 20.0 + i} for i in range(ROWS)]


def _predict(client, key: str, n: int = REQUESTS) -> None:
    for _ in range(n):
        answer = client.post("/predict", json={"records": RECORDS}, headers={"X-API-Key": key})
        assert answer.status_code == 200, answer.text


def _cost_figures(text: str) -> tuple[float, float, float, float]:
    where = {"model": MODEL, "hardware": hardware().label()}
    return (sample_value(text, "tideline_inference_cost_total", **where),
            sample_value(text, "tideline_inference_cpu_seconds_total", **where),
            sample_value(text, "tideline_inference_predictions_total", **where),
            sample_value(text, "tideline_inference_cost_per_1000_predictions", **where))


def test_inference_cost_at_the_specs_price(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDELINE_PRICE_CPU_CORE_HOUR", "999")  # the spec's price wins
    # 3,600 a core-hour: a CPU second costs 1.
    with served(tmp_path, monkeypatch, cost={"cpu_core_hour": 3600.0}) as (client, key):
        _predict(client, key)
        text = client.get("/metrics").text
    cost, cpu, predictions, per_1000 = _cost_figures(text)
    assert predictions == REQUESTS * ROWS
    assert cpu > 0 and cost == pytest.approx(cpu)
    assert per_1000 == pytest.approx(1000 * cost / predictions)
    # Every answered record was scored by ONNX Runtime, in batches of any size.
    assert sample_value(text, "tideline_records_total", model=MODEL) == predictions
    assert sample_value(text, "tideline_batch_size_sum", model=MODEL) == predictions


def test_inference_cost_at_the_environments_price_without_a_cost_section(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("TIDELINE_PRICE_CPU_CORE_HOUR", "7200")
    monkeypatch.setenv("TIDELINE_BATCHING", "0")  # one ONNX Runtime call per request
    with served(tmp_path, monkeypatch) as (client, key):
        _predict(client, key)
        first = _cost_figures(client.get("/metrics").text)
        _predict(client, key, 3)
        second = _cost_figures(client.get("/metrics").text)
    cost, cpu, predictions, per_1000 = first
    assert cost > 0 and cost == pytest.approx(2 * cpu)
    assert per_1000 == pytest.approx(1000 * cost / predictions)
    # The totals only grow, and the gauge follows them.
    assert second[0] > cost and second[2] == predictions + 3 * ROWS
    assert second[3] == pytest.approx(1000 * second[0] / second[2])


def test_without_prices_inference_costs_nothing_but_is_still_counted(tmp_path, monkeypatch):
    for name in ("TIDELINE_PRICE_CPU_CORE_HOUR", "TIDELINE_PRICE_GPU_HOUR"):
        monkeypatch.delenv(name, raising=False)
    with served(tmp_path, monkeypatch) as (client, key):
        _predict(client, key, 2)
        cost, cpu, predictions, per_1000 = _cost_figures(client.get("/metrics").text)
    assert cost == 0 and per_1000 == 0 and cpu > 0 and predictions == 2 * ROWS


def test_every_family_follows_prometheus_naming(tmp_path, monkeypatch):
    with served(tmp_path, monkeypatch, cost={"cpu_core_hour": 1.0},
                serving__rate_limit_per_minute=3) as (client, key):
        _predict(client, key, 3)
        refused = client.post("/predict", json={"records": RECORDS}, headers={"X-API-Key": key})
        assert refused.status_code == 429
        text = client.get("/metrics").text
    found = families(text)
    assert {"tideline_requests", "tideline_request_latency_seconds", "tideline_batch_size",
            "tideline_model_reloads", "tideline_rate_limited", "tideline_inference_cost",
            "tideline_inference_cost_per_1000_predictions"} <= set(found)
    for name, family in found.items():
        assert name.startswith("tideline_"), name
        assert family.samples, f"{name} is declared but has no sample"
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
            assert not name.endswith("_total")  # so the exposed name has one _total
        assert "milliseconds" not in name and not name.endswith("_ms"), "base units: seconds"
    # The 429's label is the key's name from the key file, never the key itself.
    [refusal] = [s for s in found["tideline_rate_limited"].samples if s.name.endswith("_total")]
    assert refusal.labels == {"model": MODEL, "key": "metrics"}
    assert key not in text


MULTIPROCESS_WORKER = """
import sys
from pathlib import Path
from pipelines.cost import Prices
from pipelines.quantize import session
from serving.metrics import Metrics
from serving.models import LoadedModel

metrics = Metrics()
assert metrics.multiprocess
model = LoadedModel(1, "b3:tw1", ["age"], [], {"fp32": session(Path(sys.argv[1]).read_bytes())})
run = metrics.metered("adult_small", model, "fp32", Prices(cpu_core_hour=3600.0))
for _ in range(int(sys.argv[2])):
    run(model.feeds([{"age": 30.0}] * 4))
if sys.argv[3] == "render":
    sys.stdout.write(metrics.render()[0].decode())
"""


def test_cost_metrics_add_up_across_worker_processes(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR (several uvicorn workers), /metrics sums every worker's
    counters, and the per-1,000 gauge is worked out from those sums."""
    model = tmp_path / "model.onnx"
    model.write_bytes(model_bytes())
    (tmp_path / "prom").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}

    def worker(batches: int, then: str) -> str:
        return subprocess.run([sys.executable, "-c", MULTIPROCESS_WORKER, str(model),
                               str(batches), then], env=env, cwd=REPO, check=True,
                              capture_output=True, text=True).stdout

    worker(10, "exit")
    text = worker(5, "render")
    where = {"model": MODEL, "hardware": hardware().label()}
    predictions = sample_value(text, "tideline_inference_predictions_total", **where)
    cost = sample_value(text, "tideline_inference_cost_total", **where)
    assert predictions == (10 + 5) * 4
    assert cost > 0 and cost == pytest.approx(
        sample_value(text, "tideline_inference_cpu_seconds_total", **where))
    assert sample_value(text, "tideline_inference_cost_per_1000_predictions", **where) == \
        pytest.approx(1000 * cost / predictions)
