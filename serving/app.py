"""The inference service: FastAPI on uvicorn, ONNX Runtime, fed by the deployment history.

``create_app()`` reads its settings from the environment (see ``serving.config``); run it
with ``python -m cli.serve`` (``make serve``).
"""


import asyncio
import contextlib
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader

from serving.canary import MemoryCanaryStats, RedisCanaryStats, to_canary, verdict
from serving.config import ServiceConfig
from serving.predlog import PredictionLog
from serving.runtime import Runtime
from serving.schema import ErrorResponse, PredictResponse, record_model, request_model
from serving.security import ApiKeys, MemoryRateLimiter, RedisRateLimiter

LOG = logging.getLogger("tideline.serving")
ERRORS = {401: {"model": ErrorResponse, "description": "missing or unknown API key"},
          411: {"model": ErrorResponse, "description": "Content-Length required"},
          413: {"model": ErrorResponse, "description": "payload too large"},
          422: {"model": ErrorResponse, "description": "malformed records"},
          429: {"model": ErrorResponse, "description": "rate limit exceeded"},
          503: {"model": ErrorResponse, "description": "no model loaded yet"}}


class ServiceError(Exception):
    def __init__(self, status: int, error: str, detail: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None):
        self.status, self.error, self.detail, self.headers = status, error, detail or [], headers


def _field(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


class BodyLimit:
    """Refuse POST bodies without a length (411) or over the limit (413) before reading them.

    Plain ASGI rather than ``@app.middleware("http")``: that wrapper costs a task group
    per request, which was the largest CPU cost of a prediction here.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length")
            error = None
            if length is None:
                error = 411, "send a Content-Length header"
            elif not length.isdigit() or int(length) > self.max_bytes:
                error = 413, (f"payload of {length.decode(errors='replace')} bytes is over "
                              f"the limit of {self.max_bytes} bytes (serving.max_body_bytes); "
                              "split the records over several requests")
            if error:
                await JSONResponse({"error": error[1], "detail": []},
                                   status_code=error[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    config = config or ServiceConfig.from_env()
    runtime = Runtime(config)
    keys = ApiKeys(config.api_keys)
    record = record_model(config.numeric, config.categorical)
    body_model = request_model(record, config.serving.max_records)
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="API key (`python -m cli.deployctl api-key NAME`)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="infer")
        if config.redis_url:
            runtime.limiter = RedisRateLimiter(config.redis_url,
                                               config.serving.rate_limit_per_minute)
            runtime.canary_stats = RedisCanaryStats(config.redis_url, config.model_name)
        else:
            runtime.limiter = MemoryRateLimiter(config.serving.rate_limit_per_minute)
            runtime.canary_stats = MemoryCanaryStats()
        runtime.predlog = PredictionLog(
            config.production_dir, flush_rows=config.serving.log_flush_rows,
            flush_seconds=config.serving.log_flush_seconds,
            retention_files=config.serving.log_retention_files)
        runtime.predlog.start()
        # A deploy killed before its head write must not leave the service on the old model.
        await asyncio.get_running_loop().run_in_executor(runtime.executor, runtime.repair)
        await runtime.refresh()
        watcher = asyncio.create_task(runtime.watch())
        try:
            yield
        finally:
            watcher.cancel()
            await runtime.predlog.close()
            await runtime.limiter.close()
            await runtime.canary_stats.close()
            runtime.executor.shutdown(wait=False)

    app = FastAPI(title=f"Tideline serving: {config.model_name}", lifespan=lifespan,
                  description="Predictions from the deployed model (stable, and a canary "
                              "when one is live). Records are raw feature values; the model "
                              "applies its own preprocessing.")
    app.state.runtime = runtime

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        detail = []
        for err in exc.errors()[:50]:
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field (not a feature of this model)"
            elif err["type"] == "missing":
                msg = "field required (send null for a missing value)"
            detail.append({"field": _field(tuple(err["loc"])), "error": msg})
        return JSONResponse({"error": "malformed request: see detail for each field",
                             "detail": detail}, status_code=422)

    app.add_middleware(BodyLimit, max_bytes=config.serving.max_body_bytes)

    async def authorized(request: Request, api_key: str | None = Depends(key_header)) -> str:
        auth = request.headers.get("authorization", "")
        presented = api_key or (auth[7:] if auth.lower().startswith("bearer ") else None)
        name = keys.verify(presented)
        if name is None:
            raise ServiceError(401, "missing API key: send X-API-Key (or Authorization: Bearer)"
                               if not presented else "unknown API key",
                               headers={"WWW-Authenticate": "Bearer"})
        allowed, reset = await runtime.limiter.hit(name)
        if not allowed:
            runtime.metrics.rate_limited.labels(key=name).inc()
            raise ServiceError(429, f"rate limit of {config.serving.rate_limit_per_minute} "
                               "requests per minute exceeded for this key",
                               headers={"Retry-After": str(int(reset) + 1)})
        return name

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS,
              summary="Predict for one or many raw records")
    async def predict(body: body_model, request: Request,  # type: ignore[valid-type]
                      key: str = Depends(authorized)) -> dict[str, Any]:
        start = time.perf_counter()
        routing = runtime.routing
        if routing is None:
            raise ServiceError(503, "no model is deployed and loaded yet; see GET /ready")
        records = [r.model_dump(by_alias=True) for r in body.records]
        priority = "high" if request.headers.get("x-priority", "").lower() == "high" else "normal"
        variant = config.serving.variants[priority]
        role, model = "stable", routing.stable
        if routing.canary is not None and to_canary(
                config.canary.share, request.headers.get("x-routing-key")):
            role, model = "canary", routing.canary
        try:
            p = await runtime.infer(model, variant, records)
            ok = bool(np.all(np.isfinite(p)))
        except Exception:
            if role == "stable":
                raise
            LOG.exception("canary version %s failed a request", model.version)
            ok = False
        if role == "canary":
            elapsed_ms = (time.perf_counter() - start) * 1000
            totals = await runtime.canary_stats.record(routing.seq, ok, elapsed_ms)
            decision, why = verdict(config.canary, totals)
            if decision:
                runtime.decide(routing.seq, decision, why)
            if not ok:  # the client still gets an answer, from the stable model
                role, model = "stable", routing.stable
                p = await runtime.infer(model, variant, records)
        bad = [i for i, v in enumerate(p) if not np.isfinite(v)]
        if bad:
            raise ServiceError(422, "the model gave no finite score for these records: values "
                               "far outside the training range?",
                               [{"field": f"records[{i}]", "error": "non-finite score"}
                                for i in bad[:50]])
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        now = time.time()
        runtime.predlog.add([
            {"request_id": request_id, "row": i, "timestamp": now,
             "model_version": model.version, "variant": variant, "role": role,
             "probability": float(v), **r} for i, (v, r) in enumerate(zip(p, records))])
        seconds = time.perf_counter() - start
        labels = {"model_version": str(model.version), "variant": variant, "role": role}
        runtime.metrics.requests.labels(**labels, status="200").inc()
        runtime.metrics.latency.labels(**labels).observe(seconds)
        runtime.metrics.records.labels(**labels).inc(len(records))
        return {"request_id": request_id, "model_version": model.version, "variant": variant,
                "role": role,
                "predictions": [{"probability": float(v),
                                 "label": config.positive_label if v >= 0.5
                                 else config.negative_label} for v in p]}

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: a model is loaded; details of the last reload",
             responses={503: {"description": "no model loaded"}})
    async def ready() -> JSONResponse:
        detail = runtime.describe()
        return JSONResponse(detail, status_code=200 if detail["ready"] else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        body, content_type = runtime.metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    return app
