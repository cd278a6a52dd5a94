"""The inference service: FastAPI on uvicorn, ONNX Runtime, fed by each model's deployment history.

One process serves every model of the instance (each spec of the datasets folder, or
``TIDELINE_SPEC`` alone) once it is deployed. ``POST /predict`` answers for the default
model; the Open Inference Protocol v2 routes (``serving.routes_v2``) for any model by name.
``/docs`` and ``/redoc`` serve their assets from here, so they work offline (``serving.docs``).
``create_app()`` reads its settings from the environment (see ``serving.config``); run it
with ``python -m cli.serve`` (``make serve``).
"""

import asyncio
import contextlib
import gc
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from pipelines import telemetry
from serving.config import ServiceConfig
from serving.docs import add_docs_routes, follow_known_values
from serving.http import BodyLimit, Caller, body_limits, caller_dependencies, install_error_handlers
from serving.inference import answer
from serving.routes_v2 import add_v2_routes
from serving.schema import AnyModelRequest, ErrorResponse, PredictResponse
from serving.security import ApiKeys
from serving.service import Service
from serving.tracing import fastapi_telemetry

ERRORS = {401: {"model": ErrorResponse, "description": "missing or unknown API key"},
          404: {"model": ErrorResponse, "description": "no default model is deployed"},
          411: {"model": ErrorResponse, "description": "Content-Length required"},
          413: {"model": ErrorResponse, "description": "payload too large"},
          422: {"model": ErrorResponse, "description": "malformed records"},
          429: {"model": ErrorResponse, "description": "rate limit exceeded"},
          503: {"model": ErrorResponse, "description": "no model loaded yet"}}


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    config = config or ServiceConfig.from_env()
    service = Service.build(config)
    callers = caller_dependencies(service, ApiKeys(config.api_keys))
    default = service.runtimes.get(config.default_model or "")
    # /predict keeps the default model's precise record schema; without one, the generic.
    body_model = default.request_model if default is not None else AnyModelRequest

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        # What start-up built (modules, models, sessions) lives as long as the process: kept
        # out of the collector's sight, a full collection no longer walks it, which stalled
        # requests for tens of ms (more often with tracing on, which allocates per request).
        gc.freeze()
        watcher = asyncio.create_task(service.watch())
        try:
            yield
        finally:
            watcher.cancel()
            await service.stop()
            telemetry.flush()  # the spans still queued, before the worker exits

    names = ", ".join(config.names) or "no model"
    app = FastAPI(title=f"Tideline serving: {names}", lifespan=lifespan,
                  docs_url=None, redoc_url=None, telemetry=fastapi_telemetry(),
                  description="Predictions from each deployed model (stable, and a canary "
                              "when one is live). Records are raw feature values; the model "
                              "applies its own preprocessing. `POST /predict` answers for "
                              f"the default model ({config.default_model or 'none'}); the "
                              "Open Inference Protocol v2 routes for any model by name. "
                              "A categorical field lists the values the model saw in "
                              "training; other values are accepted and treated as unknown.")
    app.state.service = service
    add_docs_routes(app)
    follow_known_values(app, default.known if default is not None else None)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=body_limits(config))

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS,
              summary="Predict for one or many raw records (the default model)")
    async def predict(body: body_model, request: Request,  # type: ignore[valid-type]
                      caller: Annotated[Caller, Depends(callers.default)]) -> dict[str, Any]:
        # Without a default model, callers.default has answered 404 before this runs.
        records = [r.model_dump(by_alias=True) for r in body.records]
        return (await answer(caller.model, records, request.headers)).predict_response()

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: a model is loaded; each model's last reload",
             responses={503: {"description": "no model loaded"}})
    async def ready() -> JSONResponse:
        detail = service.describe()
        return JSONResponse(detail, status_code=200 if detail["ready"] else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        body, content_type = service.shared.metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    add_v2_routes(app, service, callers)
    return app
