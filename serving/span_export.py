"""Span export in a process of its own, so that encoding spans never holds up a request.

The SDK's batch processor encodes spans to OTLP protobuf on a thread of the service's own
process: about 50 µs a span of pure Python, in bursts (a few hundred spans every export),
during which a request waits for the interpreter. At a few hundred requests a second that
showed as several ms of p99 latency (``bench/tracing_overhead.py``).

:class:`OffloadedSpanProcessor` keeps only what a span is made of (plain tuples, a few µs),
and a sender thread hands them over a pipe, pickled, to an exporter process that rebuilds
the spans and exports them with the standard OTLP exporter (its endpoint, headers, timeout,
retries: the ``OTEL_*`` variables, inherited). That process runs at the lowest CPU priority.

What it guarantees: spans are exported in the order they ended; ``force_flush`` returns
once the exporter process has exported everything handed over before it, or after its
timeout; spans beyond ``MAX_QUEUED`` waiting are dropped (counted in the log), as the SDK's
processor drops beyond its queue; if the exporter process dies, spans are dropped with one
warning and the service goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection  # (its exit handler then runs after the provider's flush)
import os
import threading
from typing import Any

from pipelines.telemetry import EXPORT_DELAY_MS

LOG = logging.getLogger("tideline.serving.tracing")
EXPORT_DELAY_S = EXPORT_DELAY_MS / 1000  # how often ended spans are handed over (as in runs)
MAX_QUEUED = 8192  # spans waiting to be handed over; more are dropped
EXPORT_BATCH = 512  # spans per OTLP request, as the SDK's batch processor sends

# A span as plain data (what pickles fast): name, trace id, span id, trace flags, parent
# (trace id, span id, flags, remote) or None, kind, start, end, attributes, events
# ((name, time, attributes), ...), links ((trace id, span id, flags, attributes), ...),
# status (code, description), scope (name, version, schema URL).
SpanData = tuple[Any, ...]


def _data(span: Any) -> SpanData:
    ctx, parent, scope = span.context, span.parent, span.instrumentation_scope
    return (span.name, ctx.trace_id, ctx.span_id, int(ctx.trace_flags),
            None if parent is None else (parent.trace_id, parent.span_id,
                                         int(parent.trace_flags), parent.is_remote),
            span.kind.value, span.start_time, span.end_time, dict(span.attributes or {}),
            tuple((e.name, e.timestamp, dict(e.attributes or {})) for e in span.events),
            tuple((lk.context.trace_id, lk.context.span_id, int(lk.context.trace_flags),
                   dict(lk.attributes or {})) for lk in span.links),
            (span.status.status_code.value, span.status.description),
            None if scope is None else (scope.name, scope.version, scope.schema_url))


def _span(data: SpanData, resource: Any) -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    (name, trace_id, span_id, flags, parent, kind, start, end, attributes, events, links,
     status, scope) = data

    def context(tid: int, sid: int, fl: int, remote: bool = False) -> Any:
        return trace.SpanContext(tid, sid, is_remote=remote, trace_flags=trace.TraceFlags(fl))

    return ReadableSpan(
        name, context=context(trace_id, span_id, flags),
        parent=None if parent is None else context(*parent), resource=resource,
        attributes=attributes, kind=trace.SpanKind(kind), start_time=start, end_time=end,
        events=[Event(n, a, timestamp=t) for n, t, a in events],
        links=[trace.Link(context(t, s, f), a) for t, s, f, a in links],
        status=trace.Status(trace.StatusCode(status[0]), status[1]),
        instrumentation_scope=None if scope is None else InstrumentationScope(*scope))


def _exporter_main(conn: Any, resource_attributes: dict[str, Any]) -> None:
    """The exporter process: rebuild each batch of spans and export it; ack flushes."""
    import contextlib
    import signal

    # Ctrl-C reaches the whole process group: the service decides when this one ends (the
    # pipe closing), after its last flush.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource

    with contextlib.suppress(OSError):
        os.nice(19)
    log = logging.getLogger(__name__)
    resource, exporter = Resource(resource_attributes), OTLPSpanExporter()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        except Exception:  # a batch that does not unpickle is lost, not the exporter
            log.warning("a batch of spans could not be read; dropped", exc_info=True)
            continue
        if message is None:
            break
        kind, payload = message
        if kind == "spans":
            for at in range(0, len(payload), EXPORT_BATCH):
                try:
                    exporter.export([_span(d, resource) for d in payload[at:at + EXPORT_BATCH]])
                except Exception:  # an export that fails loses its batch, as in the SDK
                    log.warning("span export failed", exc_info=True)
        elif kind == "flush":
            with contextlib.suppress(OSError):
                conn.send(payload)
    exporter.shutdown()


class OffloadedSpanProcessor:
    """A span processor (the SDK's interface) whose spans are exported by another process."""

    def __init__(self, resource: Any, delay_s: float = EXPORT_DELAY_S,
                 max_queued: int = MAX_QUEUED):
        ctx = multiprocessing.get_context("spawn")  # nothing of the service is copied
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_exporter_main, name="tideline-span-exporter",
                                 args=(child, dict(resource.attributes)), daemon=True)
        self._proc.start()
        child.close()
        self._delay, self._max = delay_s, max_queued
        self._pending: list[SpanData] = []
        self._lock = threading.Lock()  # the pending list
        self._send_lock = threading.Lock()  # the pipe
        self._wake = threading.Event()
        self._stop = False
        self._dropped = 0
        self._broken = False
        self._flushes = 0
        self._thread = threading.Thread(target=self._run, name="tideline-span-sender",
                                        daemon=True)
        self._thread.start()

    # SpanProcessor interface
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        if not span.context.trace_flags.sampled:
            return
        data = _data(span)
        with self._lock:
            if len(self._pending) >= self._max:
                self._dropped += 1
                return
            self._pending.append(data)

    def shutdown(self) -> None:
        self.force_flush(5_000)
        self._stop = True
        self._wake.set()
        self._thread.join(5)
        # The pipe may be held by a send stuck on a full pipe (the exporter retrying a dead
        # endpoint): then the exporter process is ended rather than waited for.
        if self._send_lock.acquire(timeout=5):
            try:
                self._conn.send(None)
            except OSError:
                pass
            finally:
                self._send_lock.release()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Hand over what is waiting; wait until the exporter process has exported it.

        Gives up (``False``) after ``timeout_millis``, the wait for the pipe included.
        """
        if not self._send_lock.acquire(timeout=timeout_millis / 1000):
            return False
        try:
            self._send_pending()
            if self._broken:
                return False
            self._flushes += 1
            token = self._flushes
            try:
                self._conn.send(("flush", token))
                while self._conn.poll(timeout_millis / 1000):
                    if self._conn.recv() == token:
                        return True
            except (EOFError, OSError):
                self._broke()
            return False
        finally:
            self._send_lock.release()

    # the sender
    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self._delay)
            self._wake.clear()
            with self._send_lock:
                self._send_pending()

    def _send_pending(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            LOG.warning("traces: %d spans dropped (more than %d waiting for the exporter); "
                        "trace a share of the requests (OTEL_TRACES_SAMPLER_ARG) or check "
                        "that the OTLP endpoint keeps up", dropped, self._max)
        if not batch or self._broken:
            return
        try:
            self._conn.send(("spans", batch))
        except OSError:
            self._broke()
        except Exception:  # a span that does not pickle loses its batch, not the exporter
            LOG.warning("traces: a batch of %d spans could not be handed to the exporter; "
                        "dropped", len(batch), exc_info=True)

    def _broke(self) -> None:
        if not self._broken:
            self._broken = True
            LOG.warning("traces: the span exporter process ended (exit code %s); spans are "
                        "no longer exported by this service (restart it to export again)",
                        self._proc.exitcode)
