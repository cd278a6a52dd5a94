"""Over HTTP: micro-batched vs unbatched service at a fixed request rate, on loopback.

An open-loop load generator (``bench/loadgen.py``, in this process, pinned to core 0)
sends single-record requests (real UCI Adult rows) at a fixed rate; the service (one
uvicorn worker, pinned to core 1) runs with micro-batching on, then off
(``TIDELINE_BATCHING=0``), alternating rounds. Latency runs from each request's
*scheduled* send time to its answer, so a stalled server cannot hide queueing (no
coordinated omission).

Targets: batched throughput not lower than unbatched; batched p99 ≤ 50 ms.
Rates: ``TIDELINE_BENCH_RATES`` (requests/s, comma-separated; default 200,400,800);
seconds per round: ``TIDELINE_BENCH_SECONDS`` (default 8); ``TIDELINE_BENCH_ROUTE=infer``
sends the same records as Open Inference Protocol v2 requests
(``POST /v2/models/adult/infer``, one tensor per column) instead of ``POST /predict``.
"""

from __future__ import annotations

import asyncio
import os
import statistics

from bench.serving_common import HOME, Server, adult_records, deployed_home


def _body(record: dict, route: str, numeric: set[str]) -> tuple[str, dict]:
    if route != "infer":
        return "/predict", {"records": [record]}
    inputs = [{"name": c, "shape": [1], "datatype": "FP32" if c in numeric else "BYTES",
               "data": [v]} for c, v in record.items()]
    return "/v2/models/adult/infer", {"inputs": inputs}


def _load(server, records: list[dict], rate: float, seconds: float) -> dict:
    from bench.loadgen import encode, run

    n = int(rate * seconds)
    from pipelines.spec import load_spec

    route = os.environ.get("TIDELINE_BENCH_ROUTE", "predict")
    numeric = set(load_spec(HOME / "spec.yaml").numeric_columns)
    requests = [encode("127.0.0.1", server.port,
                       *_body(records[i % len(records)], route, numeric),
                       {"X-API-Key": server.key})
                for i in range(n)]
    result = asyncio.run(run("127.0.0.1", server.port, requests, rate))
    return {"throughput": result.throughput, "errors": result.errors, "p50": result.p50,
            "p99": result.p99}


def main() -> None:
    home = deployed_home()
    records = adult_records(5000, seed=3)
    rates = [float(r) for r in os.environ.get("TIDELINE_BENCH_RATES", "200,400,800").split(",")]
    seconds = float(os.environ.get("TIDELINE_BENCH_SECONDS", "8"))
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    print(f"(b) HTTP, single-record requests, client on core 0, server on core 1, "
          f"{seconds:g} s per round")
    with Server(home, cores="1") as batched, Server(home, cores="1",
                                                    TIDELINE_BATCHING="0") as plain:
        for rate in rates:
            rounds: dict[str, list[dict]] = {"batched": [], "unbatched": []}
            for _ in range(2):
                for name, server in (("batched", batched), ("unbatched", plain)):
                    rounds[name].append(_load(server, records, rate, seconds))
            summary = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                       for name, rs in rounds.items()}
            b, u = summary["batched"], summary["unbatched"]
            ratio = b["throughput"] / u["throughput"]
            print(f"    {rate:>5.0f} req/s offered: batched {b['throughput']:6.1f} req/s "
                  f"p50 {b['p50']:6.1f} ms p99 {b['p99']:7.1f} ms errors {b['errors']:.0f} | "
                  f"unbatched {u['throughput']:6.1f} req/s p50 {u['p50']:6.1f} ms "
                  f"p99 {u['p99']:7.1f} ms errors {u['errors']:.0f} | throughput ratio "
                  f"{ratio:.2f} (target ≥ 1: {'meets' if ratio >= 0.99 else 'MISSES'}); "
                  f"batched p99 target ≤ 50 ms: {'meets' if b['p99'] <= 50 else 'MISSES'}",
                  flush=True)


if __name__ == "__main__":
    main()
