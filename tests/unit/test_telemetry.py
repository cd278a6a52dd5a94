"""Tracing on its own: run and stage ids, spans to a test OTLP receiver, the request
middleware's HTTP attributes, and nothing at all when the endpoint variable is unset."""

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest

from pipelines import telemetry
from tests.conftest import REPO
from tests.otlp_receiver import OtlpReceiver

SERVER, INTERNAL = 2, 1  # OTLP span kinds


@pytest.fixture
def receiver(monkeypatch):
    with OtlpReceiver() as rx:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url)
        yield rx
        telemetry.flush()  # nothing left queued for a receiver that is gone


def test_a_runs_trace_is_its_run_id_and_stage_spans_are_fixed_by_it():
    run = str(uuid.uuid4())
    assert telemetry.run_trace_id(run) == uuid.UUID(run).hex
    # A run id that is no UUID still gives a stable 128-bit id.
    odd = telemetry.run_trace_id("not-a-uuid")
    assert odd == telemetry.run_trace_id("not-a-uuid") and len(odd) == 32 and int(odd, 16)
    trace = uuid.UUID(run).hex
    ids = {telemetry.stage_span_id(trace, model, stage)
           for model in ("adult", "compas") for stage in ("trained_weights", "model_card")}
    assert len(ids) == 4 and all(len(i) == 16 for i in ids)
    assert telemetry.stage_span_id(trace, "adult", "trained_weights") == \
        telemetry.stage_span_id(trace, "adult", "trained_weights")
    # A step retried within its run gets a span of its own; the first attempt keeps the id.
    attempts = {telemetry.stage_span_id(trace, "adult", "trained_weights", n) for n in range(3)}
    assert len(attempts) == 3
    assert telemetry.stage_span_id(trace, "adult", "trained_weights", 0) in ids


def test_a_dead_endpoint_costs_one_flush_timeout_per_process_not_one_per_stage(
        monkeypatch, caplog):
    import socket
    import threading

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")

    def flushing():
        return [t for t in threading.enumerate() if t.name == "tideline-trace-flush"]

    for stage in ("raw_data", "validated_features", "trained_weights"):
        telemetry.start_span(stage, {"tideline.stage": stage}).end()
        # The exporter retries a refused connection with backoff for its own 10 s: the
        # first flush gives up waiting after 200 ms and leaves it trying; the later ones
        # see it still trying and start nothing more.
        telemetry.flush(timeout_ms=200)
        assert len(flushing()) == 1
    said = [r.getMessage() for r in caplog.records if "did not take the spans" in r.getMessage()]
    assert len(said) == 1 and f"127.0.0.1:{port}" in said[0], said
    flushing()[0].join(30)  # that flush is through: the next one tries (and waits) again
    telemetry.start_span("model_card", {}).end()
    telemetry.flush(timeout_ms=200)
    assert len(flushing()) == 1
    assert sum("did not take the spans" in r.getMessage() for r in caplog.records) == 2
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")


def test_spans_take_the_chosen_trace_nest_and_record_errors(receiver):
    trace = uuid.uuid4().hex
    stage_id = telemetry.stage_span_id(trace, "adult", "trained_weights")
    stage = telemetry.start_span("trained_weights", {"tideline.model": "adult", "none": None},
                                 trace_id=trace, span_id=stage_id)
    assert (stage.trace_id, stage.span_id) == (trace, stage_id)
    with stage.activate():
        with telemetry.span("epoch", {"tideline.epoch": 0}) as epoch:
            epoch.set({"tideline.val_loss": 0.5})
        with pytest.raises(ValueError), telemetry.span("epoch", {"tideline.epoch": 1}):
            raise ValueError("diverged")
    stage.end()
    stage.end()  # once only
    telemetry.flush()
    spans = receiver.wait_for(lambda s: len(s) == 3)
    by_name = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    (root,) = by_name["trained_weights"]
    assert (root.trace_id, root.span_id, root.parent_span_id) == (trace, stage_id, "")
    assert root.attributes == {"tideline.model": "adult"}
    epochs = sorted(by_name["epoch"], key=lambda s: s.attributes["tideline.epoch"])
    assert [e.trace_id for e in epochs] == [trace, trace]
    assert [e.parent_span_id for e in epochs] == [stage_id, stage_id]
    assert epochs[0].attributes["tideline.val_loss"] == 0.5
    assert len({e.span_id for e in epochs} | {stage_id}) == 3  # children get their own ids


def test_current_trace_id_names_the_active_span(receiver, monkeypatch):
    assert telemetry.current_trace_id() is None
    with telemetry.span("stage", trace_id="ab" * 16):
        assert telemetry.current_trace_id() == "ab" * 16
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    with telemetry.span("stage", trace_id="cd" * 16) as off:
        assert off is telemetry.NO_SPAN and telemetry.current_trace_id() is None


OFF_SCRIPT = """
import json, sys
from pipelines import telemetry
with telemetry.span("epoch", {"tideline.epoch": 0}) as s:
    s.set({"x": 1})
span = telemetry.start_span("stage", trace_id="ab" * 16)
span.end()
from serving import tracing
with tracing.batch_span([tracing.current()], 3):
    pass
print(json.dumps({"no_span": s is telemetry.NO_SPAN and span is telemetry.NO_SPAN,
                  "tracer": telemetry.tracer("x") is None,
                  "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
"""


def test_unset_endpoint_records_nothing_and_imports_no_opentelemetry():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", OFF_SCRIPT], cwd=REPO, check=True, text=True,
                         capture_output=True, env=env | {"PYTHONPATH": str(REPO)})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"no_span": True, "tracer": True, "imported": []}


def test_disabled_sdk_wins_over_an_endpoint(receiver, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry.enabled() and telemetry.start_span("x") is telemetry.NO_SPAN


def _app():
    from fastapi import FastAPI, HTTPException

    from serving import tracing

    app = FastAPI(telemetry=tracing.fastapi_telemetry())

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str) -> dict:
        tracing.annotate(tracing.current(), model=name, version=3, variant="int8",
                         role="canary", records=2, training_trace="12" * 16)
        return {"ok": True}

    @app.get("/fail")
    async def fail() -> dict:
        raise RuntimeError("boom")

    @app.get("/missing")
    async def missing() -> dict:
        raise HTTPException(404, "nope")

    @app.get("/health")
    async def health() -> dict:
        return {}

    return app


def test_request_spans_follow_the_http_conventions_and_join_the_callers_trace(receiver):
    from fastapi.testclient import TestClient

    from pipelines.cost import hardware

    client_trace, client_span = uuid.uuid4().hex, "00f067aa0ba902b7"
    with TestClient(_app(), raise_server_exceptions=False) as client:
        assert client.post("/v2/models/adult/infer?x=1", headers={
            "traceparent": f"00-{client_trace}-{client_span}-01"}).status_code == 200
        assert client.get("/missing").status_code == 404
        assert client.get("/fail").status_code == 500
        assert client.get("/health").status_code == 200
    telemetry.flush()
    spans = {s.name: s for s in receiver.wait_for(lambda s: len(s) == 3)}
    assert set(spans) == {"POST /v2/models/{name}/infer", "GET /missing", "GET /fail"}
    infer = spans["POST /v2/models/{name}/infer"]
    assert infer.kind == SERVER
    assert (infer.trace_id, infer.parent_span_id) == (client_trace, client_span)
    a = infer.attributes
    assert a["http.request.method"] == "POST" and a["http.route"] == "/v2/models/{name}/infer"
    assert a["url.path"] == "/v2/models/adult/infer" and a["url.query"] == "x=1"
    assert a["url.scheme"] == "http" and a["http.response.status_code"] == 200
    assert a["server.address"] == "testserver"
    assert a["network.protocol.version"] == "1.1" and "error.type" not in a
    assert a["tideline.hardware"] == hardware().label()
    assert (a["tideline.model"], a["tideline.model.version"], a["tideline.variant"],
            a["tideline.role"], a["tideline.records"]) == ("adult", "3", "int8", "canary", 2)
    assert infer.links == [("12" * 16, telemetry.stage_span_id("12" * 16, "adult",
                                                               "trained_weights"))]
    # No traceparent: a trace of its own. A 4xx is the client's error, a 5xx the server's.
    assert spans["GET /missing"].parent_span_id == ""
    assert spans["GET /missing"].trace_id != client_trace
    assert spans["GET /missing"].attributes["http.response.status_code"] == 404
    assert "error.type" not in spans["GET /missing"].attributes
    fail = spans["GET /fail"].attributes
    assert fail["http.response.status_code"] == 500 and fail["error.type"] == "RuntimeError"


def test_a_batch_span_is_the_child_of_its_first_request_and_links_the_others(receiver):
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from serving import tracing
    from serving.batching import MicroBatcher

    assert tracing.fastapi_telemetry() is not None
    tracer = telemetry.tracer(tracing.SCOPE)

    async def requests():
        batcher = MicroBatcher(lambda feeds: feeds["x"][:, 0] * 2, ThreadPoolExecutor(1),
                               max_batch=64, max_wait_s=0.05)

        async def one(i):
            with tracer.start_as_current_span(f"request {i}"):
                return await batcher.submit({"x": np.full((2, 1), float(i))})

        out = await asyncio.gather(*(one(i) for i in range(3)))
        batcher.close()
        return out

    assert [list(o) for o in asyncio.run(requests())] == [[0, 0], [2, 2], [4, 4]]
    telemetry.flush()
    spans = receiver.wait_for(lambda s: len(s) == 4)
    reqs = {s.name: s for s in spans if s.name.startswith("request")}
    (batch,) = [s for s in spans if s.name == "onnxruntime batch"]
    assert batch.parent_span_id == reqs["request 0"].span_id
    assert sorted(batch.links) == sorted((r.trace_id, r.span_id) for n, r in reqs.items()
                                         if n != "request 0")
    assert batch.attributes == {"tideline.batch.size": 6, "tideline.batch.requests": 3}
    assert all(r.attributes["tideline.batch.size"] == 6 for r in reqs.values())
