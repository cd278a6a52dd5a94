"""Prometheus metrics of one service, labelled by model, named by Prometheus' conventions.

Every family starts with ``tideline_``, is in base units (seconds; a batch size is rows)
and every counter is exposed as ``*_total``. Label values are bounded: models and their
served versions, variants, roles, outcomes, the hardware the process runs on, and the
*name* of an API key (one the key file lists: a request with an unknown key is refused
before it is counted).

Inference cost: each ONNX Runtime batch is timed where it runs. Its CPU seconds are the
calling thread's CPU time (ONNX Runtime computes there with one intra-op thread), or the
wall time times the intra-op threads when it has several; on a CUDA session its wall time
is GPU time. Priced by the model's spec (``cost``) or the environment, they add up in
``tideline_inference_cost_total``; ``tideline_inference_cost_per_1000_predictions`` is
worked out from the totals at each scrape, so it is right however many workers add to them.

With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` (set by ``cli.serve``) makes
every worker write its samples there and ``/metrics`` aggregate them, so a scrape that
lands on any worker sees the whole service.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pipelines.cost import Prices, hardware

if TYPE_CHECKING:
    import numpy as np

    from serving.models import LoadedModel

Feeds = dict[str, "np.ndarray"]
COST_PER_1000 = "tideline_inference_cost_per_1000_predictions"


@dataclass(frozen=True)
class InferenceMeter:
    """Counts the rows, CPU seconds and cost of the batches of one model on one kind of session.

    It holds no model: a version the service lets go is not kept alive by its meter.
    """

    threads: int  # ONNX Runtime's intra-op threads
    on_gpu: bool
    cpu_price: float  # per CPU second
    gpu_price: float  # per GPU second
    cost: Any  # the counters' children for this model and hardware
    cpu_seconds: Any
    predictions: Any

    def run(self, run: Callable[[Feeds], np.ndarray], feeds: Feeds) -> np.ndarray:
        """``run(feeds)``, in the thread that runs it, metered."""
        wall, cpu = time.perf_counter(), time.thread_time()
        out = run(feeds)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        used = wall * self.threads if self.threads > 1 else cpu
        self.cpu_seconds.inc(used)
        self.cost.inc(used * self.cpu_price + (wall * self.gpu_price if self.on_gpu else 0.0))
        self.predictions.inc(len(next(iter(feeds.values()))))
        return out


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
        # `key` is the API key's name from the key file (bounded), never the key itself.
        self.rate_limited = Counter("tideline_rate_limited", "Requests refused with 429",
                                    ("model", "key"), **kw)
        where = ("model", "hardware")
        self.inference_cost = Counter(
            "tideline_inference_cost", "Cost of ONNX Runtime inference in the currency of the "
            "model's prices (CPU seconds x price per core-hour, GPU seconds x price per "
            "GPU-hour)", where, **kw)
        self.inference_cpu_seconds = Counter(
            "tideline_inference_cpu_seconds", "CPU seconds ONNX Runtime batches used", where,
            **kw)
        self.inference_predictions = Counter(
            "tideline_inference_predictions", "Rows ONNX Runtime scored", where, **kw)
        self._meters: dict[tuple[str, bool, int], InferenceMeter] = {}
        self._hardware: dict[bool, tuple[str, str | None]] = {}

    def _where(self, on_gpu: bool) -> tuple[str, str | None]:
        if on_gpu not in self._hardware:
            from pipelines.devices import driver_gpu_name

            gpu = (driver_gpu_name() or "cuda") if on_gpu else None
            self._hardware[on_gpu] = (hardware(gpu).label(), gpu)
        return self._hardware[on_gpu]

    def metered(self, name: str, model: LoadedModel, variant: str,
                price: Prices) -> Callable[[Feeds], np.ndarray]:
        """``model``'s runner of ``variant`` that adds each batch's cost to ``name``'s."""
        session = model.sessions[model.served_variant(variant)]
        on_gpu = "CUDAExecutionProvider" in session.get_providers()
        threads = int(session.get_session_options().intra_op_num_threads or 1)
        meter = self._meters.get((name, on_gpu, threads))
        if meter is None:
            label, gpu = self._where(on_gpu)
            kids = {"model": name, "hardware": label}
            meter = self._meters[name, on_gpu, threads] = InferenceMeter(
                threads, on_gpu, price.cpu_core_hour / 3600, price.gpu_price(gpu) / 3600,
                self.inference_cost.labels(**kids), self.inference_cpu_seconds.labels(**kids),
                self.inference_predictions.labels(**kids))
        return partial(meter.run, partial(model.run, variant))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        families = list(registry.collect())
        return generate_latest(_Collected([*families, cost_per_1000(families)])), \
            CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class _Collected:
    """Families already collected, as ``generate_latest`` takes them."""

    families: list[Any]

    def collect(self) -> Iterable[Any]:
        return self.families


def cost_per_1000(families: Iterable[Any]) -> Any:
    """The gauge of inference cost per 1,000 predictions, from the two counters' totals."""
    from prometheus_client.core import GaugeMetricFamily

    totals: dict[tuple[str, str], list[float]] = {}
    for family in families:
        for sample in family.samples:
            index = {"tideline_inference_cost_total": 0,
                     "tideline_inference_predictions_total": 1}.get(sample.name)
            if index is not None:
                where = (sample.labels["model"], sample.labels["hardware"])
                totals.setdefault(where, [0.0, 0.0])[index] += sample.value
    gauge = GaugeMetricFamily(COST_PER_1000, "Inference cost per 1,000 predictions so far",
                              labels=("model", "hardware"))
    for (model, where), (spent, rows) in sorted(totals.items()):
        if rows > 0:
            gauge.add_metric([model, where], 1000 * spent / rows)
    return gauge
