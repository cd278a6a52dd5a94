"""Prometheus metrics of one service, labelled by model.

With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` (set by ``cli.serve``) makes
every worker write its samples there and ``/metrics`` aggregate them, so a scrape that
lands on any worker sees the whole service.
"""

from __future__ import annotations

import os


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        labels = ("model", "model_version", "variant", "role")
        kw = {"registry": None if self.multiprocess else self.registry}
        self.requests = Counter("tideline_requests", "Answered prediction requests",
                                (*labels, "status"), **kw)
        self.records = Counter("tideline_records", "Records predicted", labels, **kw)
        self.latency = Histogram(
            "tideline_request_latency_seconds", "Prediction request latency", labels,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2),
            **kw)
        self.batch_size = Histogram(
            "tideline_batch_size", "Rows per inference call", ("model", "variant"),
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), **kw)
        self.reloads = Counter("tideline_model_reloads", "Deployment changes seen",
                               ("model", "outcome"), **kw)
        self.rate_limited = Counter("tideline_rate_limited", "Requests refused with 429",
                                    ("model", "key"), **kw)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
