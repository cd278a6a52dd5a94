"""The service's span export process: spans arrive whole and in order, flush waits for
them, a full queue drops (and says so), and a dead exporter process stops nothing."""

from __future__ import annotations

import logging

import pytest

from serving.span_export import OffloadedSpanProcessor
from tests.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver(monkeypatch):
    with OtlpReceiver() as rx:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url)
        yield rx


@pytest.fixture
def provider_with():
    """Makes a tracer provider exporting through an exporter process; all shut down after."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    made = []

    def make(processor_args=None):
        resource = Resource.create({"service.name": "span-export-test"})
        processor = OffloadedSpanProcessor(resource, **(processor_args or {}))
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        made.append((provider, processor))
        return provider, processor

    yield make
    for provider, processor in made:
        provider.shutdown()
        assert not processor._proc.is_alive(), "shutdown ends the exporter process"


def test_spans_arrive_whole_through_the_export_process(receiver, provider_with):
    from opentelemetry import trace

    provider, _ = provider_with()
    tracer = provider.get_tracer("tideline.serving", "1.2")
    with tracer.start_as_current_span("POST /predict", kind=trace.SpanKind.SERVER,
                                      attributes={"http.route": "/predict",
                                                  "tideline.records": 3,
                                                  "tideline.scores": (0.5, 0.25)}) as request:
        other = tracer.start_span("other request")
        batch = tracer.start_span("onnxruntime batch",
                                  links=[trace.Link(other.get_span_context(), {"why": "batch"})])
        with pytest.raises(ValueError), trace.use_span(batch, end_on_exit=True):
            raise ValueError("session failed")
        other.end()
    assert provider.force_flush(30_000)
    spans = {s.name: s for s in receiver.wait_for(lambda s: len(s) == 3)}
    sent = request.get_span_context()
    got = spans["POST /predict"]
    assert (got.trace_id, got.span_id) == (f"{sent.trace_id:032x}", f"{sent.span_id:016x}")
    assert got.kind == 2 and got.parent_span_id == ""  # SERVER, a root
    assert got.attributes == {"http.route": "/predict", "tideline.records": 3,
                              "tideline.scores": [0.5, 0.25]}
    assert got.resource["service.name"] == "span-export-test"
    assert got.end_ns > got.start_ns > 0
    assert spans["onnxruntime batch"].parent_span_id == got.span_id
    assert spans["onnxruntime batch"].links == [(got.trace_id, spans["other request"].span_id)]


def test_flush_waits_for_everything_handed_over_before_it(receiver, provider_with):
    provider, _ = provider_with({"delay_s": 3600})  # only a flush hands spans over
    tracer = provider.get_tracer("t")
    for n in range(50):
        tracer.start_span(f"span {n}").end()
    assert receiver.spans() == []
    assert provider.force_flush(30_000)
    # Flushed means exported: the receiver has them all without waiting.
    assert sorted(s.name for s in receiver.spans()) == sorted(f"span {n}" for n in range(50))


def test_a_full_queue_drops_spans_and_says_how_many(receiver, caplog, provider_with):
    provider, _ = provider_with({"delay_s": 3600, "max_queued": 5})
    tracer = provider.get_tracer("t")
    for n in range(8):
        tracer.start_span(f"span {n}").end()
    with caplog.at_level(logging.WARNING, "tideline.serving.tracing"):
        assert provider.force_flush(30_000)
    assert sorted(s.name for s in receiver.spans()) == [f"span {n}" for n in range(5)]
    assert any("3 spans dropped" in r.getMessage() for r in caplog.records)


def test_a_dead_export_process_loses_spans_but_stops_nothing(receiver, caplog,
                                                             provider_with):
    provider, processor = provider_with({"delay_s": 3600})
    processor._proc.kill()
    processor._proc.join(10)
    tracer = provider.get_tracer("t")
    with caplog.at_level(logging.WARNING, "tideline.serving.tracing"):
        tracer.start_span("after the exporter died").end()  # no error where spans are made
        assert provider.force_flush(2_000) is False
        tracer.start_span("still nothing raised").end()
        provider.force_flush(2_000)
    said = [r.getMessage() for r in caplog.records if "exporter process ended" in r.getMessage()]
    assert len(said) == 1, said
    assert receiver.spans() == []


def test_the_export_can_stay_on_a_thread_and_a_wrong_choice_is_named(monkeypatch):
    from serving import tracing

    monkeypatch.delenv("TIDELINE_TRACE_EXPORT", raising=False)
    assert tracing._span_processor() is OffloadedSpanProcessor
    monkeypatch.setenv("TIDELINE_TRACE_EXPORT", "thread")
    assert tracing._span_processor() is None  # the SDK's batch processor
    monkeypatch.setenv("TIDELINE_TRACE_EXPORT", "sidecar")
    with pytest.raises(ValueError, match=r"TIDELINE_TRACE_EXPORT='sidecar': must be process"):
        tracing._span_processor()


SERVICE = """
import sys, time
from opentelemetry.sdk.resources import Resource
from serving.span_export import OffloadedSpanProcessor
processor = OffloadedSpanProcessor(Resource.create({}))
assert processor.force_flush(60_000)  # answered: the exporter's loop is running
print(processor._proc.pid, flush=True)
time.sleep(600)
"""


def test_the_exporter_process_ignores_ctrl_c_and_ends_with_a_killed_service(receiver):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    service = subprocess.Popen([sys.executable, "-c", SERVICE], cwd=REPO, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE)
    try:
        child = int(service.stdout.readline())
        os.kill(child, signal.SIGINT)  # what Ctrl-C sends the whole process group
        time.sleep(0.5)
        os.kill(child, 0)  # still there: raises ProcessLookupError otherwise
        service.kill()  # SIGKILL: no chance to shut anything down
        service.wait()
        deadline = time.monotonic() + 30
        while True:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break  # the pipe closed under it: it ended on its own
            assert time.monotonic() < deadline, "the exporter outlived its service"
            time.sleep(0.1)
    finally:
        service.kill()
