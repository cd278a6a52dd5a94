"""What tracing costs: the service and the no-op chain with spans exported ÷ without.

(a) Serving over HTTP: four services on the same deployment (UCI Adult, as
``bench/serving_http.py``): one exporting every request's spans to a local OTLP/HTTP
receiver (its own process; it decodes the spans once the load is over) from its exporter
process (the default), one with tracing off, one exporting from a thread of the service
(``TIDELINE_TRACE_EXPORT=thread``, the SDK's batch processor: what the exporter process
replaced), and one sampling 10% of the traces
(``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, the usual setting for a busy service).
The open-loop load generator sends single-record requests at
fixed rates to each in turn, alternating rounds; client and receiver on core 0, the
services (and their exporter processes) on core 1. Reported per rate: throughput
untraced ÷ traced (what tracing takes from throughput) and the p99 difference traced −
untraced, with the service's CPU time per request, its exporter process included (what
bounds its throughput once a core is busy; steadier than p99 on a shared machine) and
the spans the receiver got.

(b) The demo chain's no-op re-run (every stage a cache hit) in process on one SQLite
instance, with the variable set (spans to the receiver) ÷ unset, interleaved.

Targets: throughput off ÷ on ≤ 1.1 and p99 + ≤ 2 ms; no-op on ÷ off ≤ 1.1.
Rates: ``TIDELINE_BENCH_RATES`` (default 200,400,800); seconds per round:
``TIDELINE_BENCH_SECONDS`` (default 8); rounds per rate and service:
``TIDELINE_BENCH_ROUNDS`` (default 3; medians are reported).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, alternate, python_env, report

# A local OTLP/HTTP endpoint that keeps the bodies it gets and decodes them (with the
# test receiver's decoder) only when the benchmark is over: decoding as they come would
# take CPU from the load generator on the same core, and a collector would run elsewhere.
RECEIVER = """
import gzip, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading
bodies = []

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        bodies.append((self.headers.get("Content-Encoding"), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
sys.stdin.read()
server.shutdown()
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
spans = 0
for encoding, body in bodies:
    request = ExportTraceServiceRequest()
    request.ParseFromString(gzip.decompress(body) if encoding == "gzip" else body)
    spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
print(spans, flush=True)
"""


class Receiver:
    """The OTLP receiver in a child process (pinned to ``core``); ``spans`` it got, at the end."""

    def __init__(self, core: str | None = "0"):
        self.core, self.spans = core, 0

    def __enter__(self) -> Receiver:
        import shutil

        cmd = [sys.executable, "-c", RECEIVER]
        if self.core and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            cmd = ["taskset", "-c", self.core, *cmd]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=python_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self.proc.communicate("", timeout=60)
        self.spans = int(out.strip() or 0)


# The third service samples a share of the traces (the standard sampler variables).
SAMPLE_RATIO = 0.1
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
           "OTEL_TRACES_SAMPLER_ARG": str(SAMPLE_RATIO)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and the processes it started (the service's
    span exporter), all their threads (Linux ``/proc``; else 0)."""

    def stat(p: int | str) -> list[str]:
        try:
            with open(f"/proc/{p}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()
        except OSError:
            return []

    total, family = 0, {pid}
    for p in [pid, *sorted(int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != pid)]:
        fields = stat(p)
        if fields and (p == pid or int(fields[1]) in family):  # fields[1]: the parent pid
            family.add(p)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _round(server, records: list[dict], rate: float, seconds: float) -> dict:
    from bench.loadgen import encode, run

    requests = [encode("127.0.0.1", server.port, "/predict",
                       {"records": [records[i % len(records)]]}, {"X-API-Key": server.key})
                for i in range(int(rate * seconds))]
    before = _cpu_seconds(server.proc.pid)
    result = asyncio.run(run("127.0.0.1", server.port, requests, rate))
    spent = _cpu_seconds(server.proc.pid) - before
    # (Exports due at the end of the round land in the next one, of the same service.)
    return {"throughput": result.throughput, "p99": result.p99, "errors": result.errors,
            "cpu_ms": 1000 * spent / len(requests)}


def serving() -> None:
    from bench.serving_common import Server, adult_records, deployed_home

    home = deployed_home()
    records = adult_records(5000, seed=3)
    rates = [float(r) for r in os.environ.get("TIDELINE_BENCH_RATES", "200,400,800").split(",")]
    seconds = float(os.environ.get("TIDELINE_BENCH_SECONDS", "8"))
    repeats = int(os.environ.get("TIDELINE_BENCH_ROUNDS", "3"))
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    print(f"(a) serving, single-record POST /predict, client and receiver on core 0, service "
          f"on core 1, {seconds:g} s per round, {repeats} rounds each (medians)", flush=True)
    with Receiver() as receiver:
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        with Server(home, cores="1", **traced) as on, Server(home, cores="1") as off, \
                Server(home, cores="1", **traced, TIDELINE_TRACE_EXPORT="thread") as thread, \
                Server(home, cores="1", **traced, **SAMPLED) as sampled:
            services = {"traced": on, "untraced": off, "in-thread": thread,
                        f"{SAMPLE_RATIO:.0%} sampled": sampled}
            for rate in rates:
                rounds: dict[str, list[dict]] = {name: [] for name in services}
                for _ in range(repeats):
                    for name, server in services.items():
                        rounds[name].append(_round(server, records, rate, seconds))
                m = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                     for name, rs in rounds.items()}
                base = m.pop("untraced")
                print(f"    {rate:>5.0f} req/s offered: untraced {base['throughput']:6.1f} req/s "
                      f"p99 {base['p99']:6.1f} ms errors {base['errors']:.0f}, "
                      f"{base['cpu_ms']:.3f} CPU ms a request", flush=True)
                for name, got in m.items():
                    slowdown = base["throughput"] / got["throughput"]
                    extra = got["p99"] - base["p99"]
                    print(f"        {name:>12}: {got['throughput']:6.1f} req/s p99 "
                          f"{got['p99']:6.1f} ms errors {got['errors']:.0f}, "
                          f"{got['cpu_ms']:.3f} CPU ms a request | throughput untraced ÷ "
                          f"{name} {slowdown:.3f} (target ≤ 1.1: "
                          f"{'meets' if slowdown <= 1.1 else 'MISSES'}); p99 "
                          f"{extra:+.2f} ms (target ≤ +2 ms: "
                          f"{'meets' if extra <= 2 else 'MISSES'}); CPU a request ×"
                          f"{got['cpu_ms'] / base['cpu_ms']:.2f}", flush=True)
    print(f"    the receiver got {receiver.spans:,} spans from the traced services", flush=True)


def noop_chain(repeats: int = 7) -> float:
    import dagster as dg

    from pipelines import telemetry
    from pipelines.demo_data import write_breast_cancer

    with tempfile.TemporaryDirectory() as tmp, Receiver(core=None) as receiver:
        state = Path(tmp)
        os.environ["TIDELINE_HOME"] = str(state)
        os.environ["TIDELINE_SPEC"] = "demo"
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        write_breast_cancer(state / "data" / "breast_cancer.parquet")
        (state / "dagster").mkdir()
        from definitions import build_definitions

        instance = dg.DagsterInstance.local_temp(
            tempdir=str(state / "dagster"), overrides={"telemetry": {"enabled": False}})
        job = build_definitions().resolve_job_def("breast_cancer_training_job")
        assert job.execute_in_process(instance=instance).success  # first run: all misses

        def run(traced: bool) -> None:
            if traced:
                os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
            else:
                os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            assert job.execute_in_process(instance=instance).success

        run(True)  # warm-up: the SDK and exporter imported once, as in a long-lived process
        run(False)
        on, off = alternate(lambda: run(True), lambda: run(False), repeats)
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        telemetry.flush()
    ratio = report("(b) no-op re-run of the demo chain, traced ÷ untraced", on, off, 1.1,
                   ("traced", "untraced"))
    print(f"    the receiver got {receiver.spans} spans ({repeats + 1} traced runs)", flush=True)
    return ratio


def main() -> None:
    noop_chain()
    serving()


if __name__ == "__main__":
    main()
