"""Request traces: a server span per HTTP request, a child span per ONNX Runtime batch.

The server span is FastAPI's own (its native OpenTelemetry support, ``FastAPI(telemetry=...)``):
it follows the stable HTTP semantic conventions (name ``{method} {route}``,
``http.request.method``, ``url.path``, ``http.route``, ``http.response.status_code``,
``server.address``/``server.port``, ``error.type`` and an error status for 5xx only) and
joins the caller's trace when a W3C ``traceparent`` comes with the request (the configured
propagators: Trace Context and Baggage by default). :func:`fastapi_telemetry` hands it the
service's tracer provider when tracing is on (`pipelines.telemetry.enabled`), with its
metrics, logs and per-operation spans off (Prometheus counts requests; one span per
request and one per batch keep the cost down); off, FastAPI gets no provider and nothing
here touches the SDK. The service's spans are encoded and sent by a process of its own
(`serving.span_export`), so that encoding them does not hold up requests.

The inference path adds what served the request (:func:`annotate`: model, version,
variant, role, records, the hardware) and a link to the ``trained_weights`` span of the
run that trained the model (``DeployedModel.training_trace``), so a slow request leads to
the model version and to the run that built it. Each ONNX Runtime call gets a span
(:func:`batch_span`): the child of the first request in its batch, linking the others.
Probes and scrapes (``/health``, ``/ready``, ``/metrics``) are not traced.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from pipelines import telemetry

SCOPE = "tideline.serving"
SERVICE = "tideline-serving"
UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics"})
_NOTHING = nullcontext()
_LINK = {"tideline.link": "trained_weights"}
EXPORT_VARIABLE = "TIDELINE_TRACE_EXPORT"  # process (default) or thread: see _span_processor
# Set when an app is built with tracing on: the tracer for batch spans, the hardware label.
_tracer: Any = None
_hardware: str | None = None


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


def fastapi_telemetry() -> dict[str, Any] | None:
    """``FastAPI(telemetry=...)``: request spans to the service's provider when tracing is on.

    ``None`` when off: FastAPI keeps its defaults (it traces only to a global provider that
    something else set up, and none is by default).
    """
    global _tracer, _hardware
    if not telemetry.enabled():
        _tracer = None
        return None
    provider = telemetry.provider(SERVICE, _span_processor())
    from pipelines.cost import hardware

    _tracer, _hardware = provider.get_tracer(SCOPE), hardware().label()
    return {"tracer_provider": provider, "tracing": True, "metrics": False, "logs": False,
            "operation_spans": False, "auto_configure": False, "exclude": _untraced}


def _span_processor() -> Any:
    """What exports the service's spans: an exporter process (`serving.span_export`).

    With ``TIDELINE_TRACE_EXPORT=thread`` (where starting a process is unwelcome), the SDK's
    batch processor on a thread of the service instead (``None``).
    """
    import os

    choice = os.environ.get(EXPORT_VARIABLE, "process").strip().lower()
    if choice == "thread":
        return None
    if choice != "process":
        raise ValueError(f"{EXPORT_VARIABLE}={choice!r}: must be process (the default) or "
                         "thread; unset it or set one of them")
    from serving.span_export import OffloadedSpanProcessor

    return OffloadedSpanProcessor


def current() -> Any:
    """The span of the request being handled, or ``None`` (tracing off, or not traced)."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    span = trace.get_current_span()
    return span if span.is_recording() else None


def annotate(span: Any, *, model: str, version: int | None, variant: str, role: str,
             records: int, training_trace: str | None) -> None:
    """Say on a request's span what served it, and link the run that trained the model."""
    span.set_attributes({"tideline.model": model, "tideline.model.version": str(version),
                         "tideline.variant": variant, "tideline.role": role,
                         "tideline.records": records, "tideline.hardware": _hardware or ""})
    if training_trace:
        span.add_link(_training_span(training_trace, model), _LINK)


@functools.lru_cache(maxsize=64)
def _training_span(training_trace: str, model: str) -> Any:
    """The ``trained_weights`` span of a training run (a few models and versions are live)."""
    return telemetry.span_context(
        training_trace, telemetry.stage_span_id(training_trace, model, "trained_weights"))


def batch_span(requests: list[Any], rows: int) -> AbstractContextManager[Any]:
    """A span around one ONNX Runtime call for ``requests`` (their spans, from `current`).

    It is the child of the first traced request and links the others; each request span
    gets the batch's row count. Nothing when none of them is traced.
    """
    traced = [r for r in requests if r is not None]
    return _batch(traced, rows) if traced and _tracer is not None else _NOTHING


@contextmanager
def _batch(requests: list[Any], rows: int) -> Iterator[Any]:
    from opentelemetry import trace

    for request in requests:
        request.set_attribute("tideline.batch.size", rows)
    links = [trace.Link(r.get_span_context()) for r in requests[1:]]
    # Not made current: nothing nests under it, and attaching a context costs per request.
    span = _tracer.start_span(
        "onnxruntime batch", context=trace.set_span_in_context(requests[0]), links=links,
        attributes={"tideline.batch.size": rows, "tideline.batch.requests": len(requests)})
    try:
        yield span
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()
