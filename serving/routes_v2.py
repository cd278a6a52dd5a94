"""Open Inference Protocol v2 routes (``/v2/...``) for every deployed model.

Health and metadata need no key; ``infer`` and ``predict`` go through the same key check,
rate limit, routing, canary judgement and prediction log as ``POST /predict``.
"""

import tomllib
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from serving.http import Caller, CallerDependencies, ServiceError
from serving.inference import answer
from serving.oip import (
    InferError,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReady,
    infer_response,
    metadata,
    requested_outputs,
    to_records,
)
from serving.schema import AnyModelRequest, ErrorResponse, PredictResponse
from serving.service import Service

REPO = FilePath(__file__).resolve().parent.parent


def _version() -> str:
    try:
        return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "the inputs do not fit the model (the error names the input)",
            401: "missing or unknown API key", 404: "no deployed model of that name",
            411: "Content-Length required", 413: "payload too large",
            422: "malformed records", 429: "rate limit exceeded",
            503: "the model is deployed but not loaded yet"}
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


def add_v2_routes(app: FastAPI, service: Service, callers: CallerDependencies) -> None:
    names = service.config.names
    model_name = Annotated[str, Path(description="the model's name (its dataset spec's name)",
                                     json_schema_extra={"enum": names} if names else None)]
    server = {"name": "tideline", "version": _version(), "extensions": []}

    @app.get("/v2", summary="OIP server metadata", tags=["v2"])
    async def server_metadata() -> dict[str, Any]:
        return server

    @app.get("/v2/health/live", summary="OIP: the server is live", tags=["v2"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", summary="OIP: every deployed model is loaded", tags=["v2"],
             responses={503: {"description": "no model deployed, or one not loaded yet"}})
    async def ready() -> JSONResponse:
        deployed = [rt for rt in service.runtimes.values() if rt.deployed]
        ok = bool(deployed) and all(rt.routing is not None for rt in deployed)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2/models/{name}", response_model=ModelMetadata, tags=["v2"],
             response_model_exclude_none=True, responses=_errors(404),
             summary="OIP model metadata: inputs (one per feature column), outputs, versions")
    async def model_metadata(name: model_name) -> ModelMetadata:
        rt = service.lookup(name)
        r = rt.routing
        versions = [] if r is None else [str(m.version) for m in (r.stable, r.canary) if m]
        return metadata(rt.config, versions, rt.known.by_column)

    @app.get("/v2/models/{name}/ready", response_model=ModelReady, tags=["v2"],
             responses=_errors(404, 503), summary="OIP: the model is loaded")
    async def model_ready(name: model_name) -> JSONResponse:
        rt = service.lookup(name)
        ok = rt.routing is not None
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @app.post("/v2/models/{name}/infer", response_model=InferResponse, tags=["v2"],
              responses=_errors(400, 401, 404, 411, 413, 429, 503),
              summary="OIP inference: one columnar tensor per feature column")
    async def infer(body: InferRequest, request: Request,
                    caller: Annotated[Caller, Depends(callers.named)]) -> InferResponse:
        rt = caller.model
        try:
            records = to_records(rt.config, body)
            outputs = requested_outputs(body)
        except InferError as exc:
            raise ServiceError(400, str(exc)) from None
        a = await answer(rt, records, request.headers, request_id=body.id)
        return infer_response(rt.name, a.request_id, a.model_version, a.variant, a.role,
                              a.probabilities, a.labels, outputs)

    @app.post("/v2/models/{name}/predict", response_model=PredictResponse, tags=["v2"],
              responses=_errors(401, 404, 411, 413, 422, 429, 503),
              summary="Predict for raw records (the body and answer of POST /predict)")
    async def predict(body: AnyModelRequest, request: Request,
                      caller: Annotated[Caller, Depends(callers.named)]) -> dict[str, Any]:
        rt = caller.model
        try:
            checked = rt.request_model.model_validate({"records": body.records})
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
        records = [r.model_dump(by_alias=True) for r in checked.records]  # type: ignore[attr-defined]
        return (await answer(rt, records, request.headers)).predict_response()
