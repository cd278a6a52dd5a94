"""OpenTelemetry tracing: on only when an OTLP endpoint is set in the environment.

The standard variables decide: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turns tracing on, ``OTEL_SDK_DISABLED=true`` off,
``OTEL_SERVICE_NAME`` names the service; the exporter reads its own (headers, timeout,
compression) and the SDK its sampler (``OTEL_TRACES_SAMPLER``). Unset, :func:`tracer`
returns ``None`` and :func:`start_span` a span that does nothing, without importing the
SDK, so the cache-hit path pays nothing.

A Dagster run's trace id is its run id (a UUID is 128 bits, as a trace id is), so every
step of a run, in any process, lands in the same trace without passing anything between
them, and one can go from a run to its trace and back. A stage's span id is derived from
the trace id, the model and the stage, so a request span can link to the span of the
stage that trained its model knowing only the trace id the deployment recorded.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# The variables a provider is built from: when they change (a test's receiver), it is rebuilt.
_PROVIDER_VARIABLES = (*ENDPOINT_VARIABLES, "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER",
                       "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_HEADERS",
                       "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
# How often queued spans are exported unless ``OTEL_BSP_SCHEDULE_DELAY`` says otherwise.
EXPORT_DELAY_MS = 200
# The Dagster run tag that holds a run's trace id.
RUN_TAG = "tideline/trace_id"
# The MLflow run tag that holds the trace id of the run that logged it.
MLFLOW_TAG = "tideline/trace_id"

_lock = threading.Lock()
_provider: Any = None
_provider_key: tuple[str, ...] | None = None
_provider_processor: Any = None  # what made the provider's span processor (None: the SDK)
_stalled: tuple[Any, threading.Thread] | None = None  # a flush out of time (see `flush`)
# Ids the next span started in this context takes instead of random ones: (trace, span).
_chosen_ids: contextvars.ContextVar[tuple[int | None, int | None]] = contextvars.ContextVar(
    "tideline_chosen_span_ids", default=(None, None))


def enabled() -> bool:
    """Whether spans are exported: an OTLP endpoint is set and the SDK is not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def _id_generator() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ChosenIds(RandomIdGenerator):
        """Random ids, except the ones `start_span` chose for the span it is starting."""

        def generate_trace_id(self) -> int:
            return _chosen_ids.get()[0] or super().generate_trace_id()

        def generate_span_id(self) -> int:
            return _chosen_ids.get()[1] or super().generate_span_id()

    return ChosenIds()


def provider(service: str = "tideline",
             processor: Callable[[Any], Any] | None = None) -> Any:
    """The process's OpenTelemetry ``TracerProvider`` (exporting over OTLP), or ``None`` (off).

    Built on first use, and again when the endpoint variables change or a ``processor``
    other than the current one is asked for.

    Args:
        service: The service name when ``OTEL_SERVICE_NAME`` does not give one; the first
            call in a process decides it.
        processor: Makes the span processor from the provider's resource, instead of the
            SDK's batch processor with the OTLP exporter (the service exports from another
            process: ``serving.span_export``).
    """
    global _provider, _provider_key, _provider_processor
    if not enabled():
        return None
    key = tuple(os.environ.get(name, "") for name in _PROVIDER_VARIABLES)
    with _lock:
        # Without a processor of its own, a caller takes the provider there is (the
        # service's, in the service) as long as the variables are the same.
        if _provider is None or key != _provider_key or (
                processor is not None and processor is not _provider_processor):
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from opentelemetry.sdk.trace import TracerProvider

            if _provider is not None:  # the endpoint changed: send what the old one holds
                _provider.shutdown()
            resource = Resource.create(
                {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
            made = TracerProvider(resource=resource, id_generator=_id_generator())
            if processor is not None:
                made.add_span_processor(processor(resource))
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
                from opentelemetry.sdk.trace.export import BatchSpanProcessor

                # Small batches often rather than the SDK's 5 s: encoding a large batch holds
                # the GIL for tens of ms, which work on other threads would feel.
                delay = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else EXPORT_DELAY_MS
                made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(),
                                                           schedule_delay_millis=delay))
            _provider, _provider_key, _provider_processor = made, key, processor
        return _provider


def tracer(name: str, service: str = "tideline") -> Any:
    """The tracer called ``name``, or ``None`` when tracing is off.

    Args:
        name: The instrumenting module (the tracer's scope).
        service: As for `provider`.
    """
    found = provider(service)
    return None if found is None else found.get_tracer(name)


def flush(timeout_ms: int = 5_000) -> None:
    """Export the spans still queued (before a process that made them ends).

    Waits at most ``timeout_ms``: the SDK's own flush ignores its timeout and retries a dead
    endpoint for as long as the exporter's (10 s by default), so it runs on a thread of its
    own here. While a flush that ran out of time is still trying, later ones do not wait,
    or each stage of a run would pay the timeout again; once it is through (the endpoint
    came back), they wait again.
    """
    global _stalled
    found = _provider
    if found is None:
        return
    if _stalled is not None and _stalled[0] is found and _stalled[1].is_alive():
        return
    worker = threading.Thread(target=found.force_flush, args=(timeout_ms,),
                              name="tideline-trace-flush", daemon=True)
    worker.start()
    worker.join(timeout_ms / 1000)
    if worker.is_alive():
        _stalled = (found, worker)
        import logging

        logging.getLogger(__name__).warning(
            "traces: the OTLP endpoint %s did not take the spans within %.1f s; not waiting "
            "for it again while it is down (check OTEL_EXPORTER_OTLP_ENDPOINT and the "
            "collector)", _endpoint(), timeout_ms / 1000)


def _endpoint() -> str:
    return next((os.environ[n] for n in ENDPOINT_VARIABLES if os.environ.get(n)), "")


def run_trace_id(run_id: str) -> str:
    """The trace id (32 hex digits) of a Dagster run: its run id, or a hash of a non-UUID id."""
    try:
        value = uuid.UUID(run_id).hex
    except ValueError:
        value = hashlib.blake2b(run_id.encode(), digest_size=16).hexdigest()
    return value if int(value, 16) else "1".zfill(32)


def stage_span_id(trace_id: str, model: str, stage: str, attempt: int = 0) -> str:
    """The span id (16 hex digits) of a model's stage in the run whose trace is ``trace_id``.

    ``attempt`` is the step's retry number within the run: a retried step gets a span of
    its own (the first attempt keeps the id a request span links to).
    """
    name = f"{trace_id}/{model}/{stage}" + (f"#{attempt}" if attempt else "")
    value = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
    return value if int(value, 16) else "1".zfill(16)


def _attribute(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str))
                                                for v in value):
        return list(value)
    return str(value)


def attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes from plain values.

    ``None`` values are left out; a value that is not a primitive (or a list of them) is
    given as its text.
    """
    return {k: _attribute(v) for k, v in values.items() if v is not None}


class Span:
    """A span being recorded; this base class is the one that records nothing (tracing off)."""

    trace_id: str | None = None  # 32 hex digits when recording
    span_id: str | None = None  # 16 hex digits when recording

    def set(self, values: Mapping[str, Any]) -> None:
        """Add attributes (``None`` values are left out)."""

    def link(self, trace_id: str, span_id: str) -> None:
        """Link this span to another trace's span (ids in hex)."""

    def activate(self) -> AbstractContextManager[Any]:
        """Make this the current span while the block runs (spans started inside nest)."""
        return nullcontext()

    def end(self, error: BaseException | None = None) -> None:
        """End the span (once); an ``error`` is recorded and marks the span failed."""


NO_SPAN = Span()


class _Recording(Span):
    def __init__(self, otel_span: Any):
        self._span = otel_span
        context = otel_span.get_span_context()
        self.trace_id = format(context.trace_id, "032x")
        self.span_id = format(context.span_id, "016x")
        self._ended = False

    def set(self, values: Mapping[str, Any]) -> None:
        self._span.set_attributes(attributes(values))

    def link(self, trace_id: str, span_id: str) -> None:
        self._span.add_link(span_context(trace_id, span_id))

    def activate(self) -> AbstractContextManager[Any]:
        from opentelemetry import trace

        return trace.use_span(self._span, end_on_exit=False)

    def end(self, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.record_exception(error)
            self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self._span.end()


def span_context(trace_id: str, span_id: str) -> Any:
    """A remote, sampled OpenTelemetry ``SpanContext`` for ids in hex (a link's target)."""
    from opentelemetry.trace import SpanContext, TraceFlags

    return SpanContext(trace_id=int(trace_id, 16), span_id=int(span_id, 16), is_remote=True,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))


def start_span(name: str, values: Mapping[str, Any] | None = None, *,
               trace_id: str | None = None, span_id: str | None = None,
               scope: str = "tideline") -> Span:
    """Start a span; `NO_SPAN` when tracing is off.

    Args:
        name: The span's name.
        values: Its attributes (``None`` values left out).
        trace_id: Start a new trace with this id (32 hex digits) rather than a child of the
            current span.
        span_id: The span's own id (16 hex digits), else a random one.
        scope: The instrumenting module (the tracer's name).
    """
    otel = tracer(scope)
    if otel is None:
        return NO_SPAN
    from opentelemetry.context import Context

    chosen = (int(trace_id, 16) if trace_id else None, int(span_id, 16) if span_id else None)
    token = _chosen_ids.set(chosen)
    try:
        started = otel.start_span(name, context=Context() if trace_id else None,
                                  attributes=attributes(values or {}))
    finally:
        _chosen_ids.reset(token)
    return _Recording(started)


@contextmanager
def span(name: str, values: Mapping[str, Any] | None = None, **options: Any) -> Iterator[Span]:
    """A span around a block, current inside it (spans started there are its children).

    The block gets the span to add attributes to; an exception leaving the block is
    recorded on it. Off, this costs a look at the environment and records nothing.
    """
    started = start_span(name, values, **options)
    try:
        with started.activate():
            yield started
    except BaseException as exc:
        started.end(exc)
        raise
    started.end()


def current_trace_id() -> str | None:
    """The trace id of the current span (32 hex digits), or ``None`` (none, or tracing off)."""
    if not enabled():
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
