"""Traces from the real chain and the real service, received by a test OTLP receiver.

One model is trained with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at the receiver (a miss
run, then a hit run), then run once more with the variable unset; the service then serves
it, traced and untraced.
"""

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipelines import deploy, telemetry
from pipelines.store import ArtifactStore
from tests.conftest import CHAIN, REPO, Chain, fast_adult_spec, materializations
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.serving_support import LOOSE_GATE, Service, held_out_records, service_env

pytestmark = pytest.mark.slow
STAGES = [*CHAIN, "deployment"]
SERVER = 2  # OTLP span kind


@dataclass
class Traced:
    home: Path
    spec: Path
    runs: list  # the two traced runs' results: a miss run, then a hit run
    spans: list[ReceivedSpan]  # all the receiver got from them
    untraced: object  # a third run, with the variable unset
    exports_after_untraced: int  # export requests the receiver got during that run
    instance: object  # the chain's Dagster instance


@pytest.fixture(scope="module")
def traced(tmp_path_factory, adult_sample) -> Traced:
    base = tmp_path_factory.mktemp("tracing")
    home = base / "home"
    with OtlpReceiver() as receiver, pytest.MonkeyPatch.context() as mp:
        for name, value in (("TIDELINE_THREADS", "1"), ("MPLBACKEND", "Agg"),
                            ("GIT_PYTHON_REFRESH", "quiet"),
                            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)):
            mp.setenv(name, value)
        spec = fast_adult_spec(base, adult_sample, gate=LOOSE_GATE, training__epochs=2,
                               deployment__canary__share=0.0, tuning__n_trials=2,
                               tuning__pruner="none",
                               tuning__search_space__epochs={"low": 2, "high": 3})
        chain = Chain(home, spec, mp)
        runs = [chain.run(), chain.run()]
        assert all(r.success for r in runs)
        spans = receiver.wait_for(lambda s: {x.trace_id for x in s if x.name == "deployment"}
                                  >= {telemetry.run_trace_id(r.run_id) for r in runs})
        mp.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        before = receiver.requests
        untraced = chain.run()
        assert untraced.success
        telemetry.flush()
        exports = receiver.requests - before
    (home / "spec.yaml").write_text(spec.read_text())
    return Traced(home, home / "spec.yaml", runs, spans, untraced, exports, chain.instance)


def _trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


def test_each_run_is_one_trace_with_a_span_per_stage(traced):
    miss, hit = traced.runs
    ids = [telemetry.run_trace_id(r.run_id) for r in traced.runs]
    assert ids[0] != ids[1]
    for run, trace_id, cache in ((miss, ids[0], "miss"), (hit, ids[1], "hit")):
        spans = _trace(traced.spans, trace_id)
        stages = {s.name: s for s in spans if s.attributes.get("tideline.stage")}
        assert sorted(stages) == sorted(STAGES)
        for name, s in stages.items():
            assert s.parent_span_id == ""  # the stages are the trace's top spans
            assert s.span_id == telemetry.stage_span_id(trace_id, "adult", name)
            assert s.attributes["tideline.model"] == "adult"
            assert s.attributes["dagster.run_id"] == run.run_id
        meta = materializations(run)
        for name in CHAIN:
            a = stages[name].attributes
            assert a["tideline.cache"] == cache, name
            assert a["tideline.recipe_key"] == meta[name]["recipe_key"]
            assert a["tideline.content_hash"] == meta[name]["content_hash"]
            assert a["tideline.seconds"] >= 0
            assert meta[name]["trace_id"] == trace_id
        assert stages["trained_weights"].attributes["tideline.device"] == "cpu"
        assert isinstance(stages["validated_features"].attributes["tideline.rows"], int)
        assert meta["deployment"]["trace_id"] == trace_id
        # Added while the run goes, so read from the instance.
        tags = traced.instance.get_run_by_id(run.run_id).tags
        assert tags[telemetry.RUN_TAG] == trace_id
    # A hit run makes no epochs, trials or MLflow runs: only its stages.
    assert {s.name for s in _trace(traced.spans, ids[1])} == set(STAGES)


def test_trials_and_epochs_are_children_of_the_training_stage(traced):
    trace_id = telemetry.run_trace_id(traced.runs[0].run_id)
    spans = _trace(traced.spans, trace_id)
    stage = next(s for s in spans if s.name == "trained_weights")
    trials = [s for s in spans if s.name == "optuna trial"]
    epochs = [s for s in spans if s.name == "epoch"]
    assert len(trials) == 2
    assert all(t.parent_span_id == stage.span_id for t in trials)
    assert all(t.attributes["tideline.trial.state"] == "COMPLETE" for t in trials)
    # Each trial's epochs under it, then the final fit's directly under the stage.
    under = {}
    for e in epochs:
        under.setdefault(e.parent_span_id, []).append(e.attributes["tideline.epoch"])
    final = materializations(traced.runs[0])["trained_weights"]["epochs_run"]
    assert {k: sorted(v) for k, v in under.items()} == {
        **{t.span_id: list(range(t.attributes["tideline.epochs_run"])) for t in trials},
        stage.span_id: list(range(final))}
    assert all("tideline.val_loss" in e.attributes for e in epochs)


def test_the_trace_id_is_in_the_run_tags_mlflow_and_the_deployment(traced):
    miss = traced.runs[0]
    trace_id = telemetry.run_trace_id(miss.run_id)
    meta = materializations(miss)
    from pipelines.tracking import import_mlflow

    client = import_mlflow().MlflowClient(
        tracking_uri=f"sqlite:///{traced.home / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(meta["trained_weights"]["mlflow_run_id"])
    assert run.data.tags[telemetry.MLFLOW_TAG] == trace_id
    nested = client.search_runs([run.info.experiment_id],
                                f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(nested) == 2 and all(r.data.tags[telemetry.MLFLOW_TAG] == trace_id
                                    for r in nested)
    card = client.get_run(meta["model_card"]["mlflow_run_id"])
    assert card.data.tags[telemetry.MLFLOW_TAG] == trace_id
    # The weights remember the run that trained them; the hit run says so too.
    assert meta["trained_weights"]["origin_trace"] == trace_id
    assert materializations(traced.runs[1])["trained_weights"]["origin_trace"] == trace_id
    stable = deploy.current(ArtifactStore(traced.home / "store"), "adult").stable
    assert stable.training_trace == trace_id


def test_without_the_variable_a_run_exports_nothing(traced):
    assert traced.exports_after_untraced == 0
    meta = materializations(traced.untraced)
    assert all("trace_id" not in meta[s] for s in STAGES)
    assert [meta[s]["cache"] for s in CHAIN] == ["hit"] * len(CHAIN)


def _predict(service: Service, key: str, records: list, **headers: str) -> httpx.Response:
    return httpx.post(f"{service.url}/predict", json={"records": records},
                      headers={"X-API-Key": key, **headers}, timeout=30)


def test_request_spans_join_the_callers_trace_and_link_the_training_run(traced):
    records, _, stable = held_out_records(traced.home)
    training = telemetry.run_trace_id(traced.runs[0].run_id)
    client_trace, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with OtlpReceiver() as receiver, Service(traced.home, traced.spec,
                                             OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                                             OTEL_BSP_SCHEDULE_DELAY="100") as service:
        key = service.api_key()
        answer = _predict(service, key, records[:3],
                          traceparent=f"00-{client_trace}-{client_span}-01")
        assert answer.status_code == 200
        assert _predict(service, key + "x", records[:1]).status_code == 401
        spans = receiver.wait_for(lambda s: any(x.trace_id == client_trace and x.kind == SERVER
                                                for x in s)
                                  and any(x.attributes.get("http.response.status_code") == 401
                                          for x in s))
    request = next(s for s in spans if s.trace_id == client_trace and s.kind == SERVER)
    assert request.name == "POST /predict" and request.parent_span_id == client_span
    a = request.attributes
    assert (a["http.request.method"], a["http.route"], a["url.path"]) == (
        "POST", "/predict", "/predict")
    assert a["http.response.status_code"] == 200
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == service.port
    assert (a["tideline.model"], a["tideline.model.version"], a["tideline.role"]) == (
        "adult", str(stable.version), "stable")
    assert a["tideline.variant"] == answer.json()["variant"] and a["tideline.records"] == 3
    assert a["tideline.batch.size"] >= 3 and a["tideline.hardware"].startswith("cpu: ")
    assert request.resource["service.name"] == "tideline-serving"
    # From the slow request to the run that trained its model: the trained_weights span.
    assert request.links == [(training, telemetry.stage_span_id(training, "adult",
                                                                "trained_weights"))]
    assert any(s.span_id == request.links[0][1] and s.name == "trained_weights"
               for s in traced.spans)
    batch = [s for s in spans if s.parent_span_id == request.span_id]
    assert [s.name for s in batch] == ["onnxruntime batch"]
    assert batch[0].trace_id == client_trace
    refused = next(s for s in spans if s.attributes.get("http.response.status_code") == 401)
    assert refused.parent_span_id == "" and "error.type" not in refused.attributes


OFF_SCRIPT = """
import json, sys, time
from fastapi.testclient import TestClient
from serving.app import create_app
key = sys.argv[1]
records = json.loads(sys.argv[2])
with TestClient(create_app()) as client:
    for _ in range(200):
        if client.get("/ready").status_code == 200:
            break
        time.sleep(0.05)
    status = client.post("/predict", json={"records": records},
                         headers={"X-API-Key": key}).status_code
# (FastAPI itself imports the OpenTelemetry API, not the SDK.)
print(json.dumps({"status": status, "imported": sorted(
    m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter")))}))
"""


def test_an_untraced_service_imports_no_opentelemetry_sdk(traced):
    records, _, _ = held_out_records(traced.home)
    env = {k: v for k, v in service_env(traced.home, traced.spec).items()
           if not k.startswith("OTEL_")}
    key = subprocess.run([sys.executable, "-m", "cli.deployctl", "api-key", "off"], cwd=REPO,
                         env=env, capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    out = subprocess.run([sys.executable, "-c", OFF_SCRIPT, key, json.dumps(records[:2])],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"status": 200, "imported": []}
    assert not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
