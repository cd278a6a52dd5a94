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


def provider_with(processor_args=None):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": "span-export-test"})
    processor = OffloadedSpanProcessor(resource, **(processor_args or {}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    return provider, processor


def test_spans_arrive_whole_through_the_export_process(receiver):
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
    provider.shutdown()


def test_flush_waits_for_everything_handed_over_before_it(receiver):
    provider, _ = provider_with({"delay_s": 3600})  # only a flush hands spans over
    tracer = provider.get_tracer("t")
    for n in range(50):
        tracer.start_span(f"span {n}").end()
    assert receiver.spans() == []
    assert provider.force_flush(30_000)
    # Flushed means exported: the receiver has them all without waiting.
    assert sorted(s.name for s in receiver.spans()) == sorted(f"span {n}" for n in range(50))
    provider.shutdown()


def test_a_full_queue_drops_spans_and_says_how_many(receiver, caplog):
    provider, _ = provider_with({"delay_s": 3600, "max_queued": 5})
    tracer = provider.get_tracer("t")
    for n in range(8):
        tracer.start_span(f"span {n}").end()
    with caplog.at_level(logging.WARNING, "tideline.serving.tracing"):
        assert provider.force_flush(30_000)
    assert sorted(s.name for s in receiver.spans()) == [f"span {n}" for n in range(5)]
    assert any("3 spans dropped" in r.getMessage() for r in caplog.records)
    provider.shutdown()


def test_a_dead_export_process_loses_spans_but_stops_nothing(receiver, caplog):
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
    provider.shutdown()


def test_the_export_can_stay_on_a_thread_and_a_wrong_choice_is_named(monkeypatch):
    from serving import tracing

    monkeypatch.delenv("TIDELINE_TRACE_EXPORT", raising=False)
    assert tracing._span_processor() is OffloadedSpanProcessor
    monkeypatch.setenv("TIDELINE_TRACE_EXPORT", "thread")
    assert tracing._span_processor() is None  # the SDK's batch processor
    monkeypatch.setenv("TIDELINE_TRACE_EXPORT", "sidecar")
    with pytest.raises(ValueError, match=r"TIDELINE_TRACE_EXPORT='sidecar': must be process"):
        tracing._span_processor()
