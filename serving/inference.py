"""The one inference path of every route: routing, canary judgement, the prediction log, metrics.

``/predict``, ``/v2/models/{name}/predict`` and ``/v2/models/{name}/infer`` turn their
bodies into raw records and call :func:`answer`; only the shape of the reply differs.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving import tracing
from serving.canary import to_canary, verdict
from serving.http import ServiceError
from serving.runtime import ModelRuntime

LOG = logging.getLogger("tideline.serving")


@dataclass(frozen=True)
class Answer:
    request_id: str
    model: str
    model_version: int | None
    variant: str
    role: str
    probabilities: list[float]
    labels: list[str]

    def predict_response(self) -> dict[str, Any]:
        """The body of ``/predict`` (and ``/v2/models/{name}/predict``)."""
        return {"request_id": self.request_id, "model_version": self.model_version,
                "variant": self.variant, "role": self.role,
                "predictions": [{"probability": p, "label": label}
                                for p, label in zip(self.probabilities, self.labels)]}


async def answer(rt: ModelRuntime, records: list[dict[str, Any]], headers: Mapping[str, str],
                 request_id: str | None = None) -> Answer:
    """Score raw records with the model's stable version or its canary, log and count them.

    Headers: ``X-Priority: high`` picks the high-priority variant, ``X-Routing-Key`` keeps a
    client on one side of a canary. The request is logged under ``request_id`` (an OIP
    request's ``id``), else its ``X-Request-Id`` header, else a new id.
    """
    start = time.perf_counter()
    routing = rt.routing
    if routing is None:
        raise ServiceError(503, f"model {rt.name!r} is deployed but not loaded yet"
                           + (f" ({rt.last_reload.error})" if rt.last_reload.error else "")
                           + "; see GET /ready")
    shared, config = rt.shared, rt.config
    priority = "high" if headers.get("x-priority", "").lower() == "high" else "normal"
    variant = config.serving.variants[priority]
    role, model = "stable", routing.stable
    if routing.canary is not None and to_canary(config.canary.share,
                                                headers.get("x-routing-key")):
        role, model = "canary", routing.canary
    try:
        p = await rt.infer(model, variant, records)
        ok = bool(np.all(np.isfinite(p)))
    except Exception:
        if role == "stable":
            raise
        LOG.exception("%s: canary version %s failed a request", rt.name, model.version)
        ok = False
    if role == "canary":
        elapsed_ms = (time.perf_counter() - start) * 1000
        totals = await shared.canary_stats.record(rt.name, routing.seq, ok, elapsed_ms)
        decision, why = verdict(config.canary, totals)
        if decision:
            rt.decide(routing.seq, decision, why)
        if not ok:  # the client still gets an answer, from the stable model
            role, model = "stable", routing.stable
            p = await rt.infer(model, variant, records)
    span = tracing.current()
    if span is not None:
        tracing.annotate(span, model=rt.name, version=model.version,
                         variant=model.served_variant(variant), role=role, records=len(records),
                         training_trace=rt.training_traces.get(model.trained_weights))
    bad = [i for i, v in enumerate(p) if not np.isfinite(v)]
    if bad:
        raise ServiceError(422, "the model gave no finite score for these records: values "
                           "far outside the training range?",
                           [{"field": f"records[{i}]", "error": "non-finite score"}
                            for i in bad[:50]])
    request_id = request_id or headers.get("x-request-id") or uuid.uuid4().hex
    variant = model.served_variant(variant)  # fp32 when the configured one was not published
    now = time.time()
    assert rt.predlog is not None
    rt.predlog.add([
        {"request_id": request_id, "row": i, "timestamp": now, "model_version": model.version,
         "variant": variant, "role": role, "probability": float(v), **r}
        for i, (v, r) in enumerate(zip(p, records))])
    labels = {"model": rt.name, "model_version": str(model.version), "variant": variant,
              "role": role}
    shared.metrics.requests.labels(**labels, status="200").inc()
    shared.metrics.latency.labels(**labels).observe(time.perf_counter() - start)
    shared.metrics.records.labels(**labels).inc(len(records))
    probabilities = [float(v) for v in p]
    return Answer(request_id, rt.name, model.version, variant, role, probabilities,
                  [config.positive_label if v >= 0.5 else config.negative_label
                   for v in probabilities])
