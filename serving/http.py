"""The HTTP edges every route shares: error bodies, body size limits, API keys, rate limits.

Every inference route (``/predict``, ``/v2/models/{name}/infer``, ``/v2/models/{name}/predict``)
takes its caller from :func:`caller_dependencies`: the API key is checked, the model is
resolved (404 naming the deployed ones) and the key's request to that model is counted
against the model's ``serving.rate_limit_per_minute``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader

from serving.config import ServiceConfig
from serving.runtime import ModelRuntime
from serving.security import ApiKeys

if TYPE_CHECKING:
    from serving.service import Service


class ServiceError(Exception):
    """An answer other than 200: ``{"error": one line, "detail": [{"field", "error"}...]}``."""

    def __init__(self, status: int, error: str, detail: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail or [], headers


def _field(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def install_error_handlers(app: FastAPI) -> None:
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
        if request.url.path.endswith("/infer"):  # Open Inference Protocol: 400, one line
            first = detail[0] if detail else {"field": "body", "error": "not JSON"}
            return JSONResponse({"error": f"malformed inference request: {first['field']}: "
                                          f"{first['error']}", "detail": detail},
                                status_code=400)
        return JSONResponse({"error": "malformed request: see detail for each field",
                             "detail": detail}, status_code=422)


class BodyLimit:
    """Refuse POST bodies without a length (411) or over the limit (413) before reading them.

    The limit is the ``serving.max_body_bytes`` of the model the path names (``/predict``:
    the default model). Plain ASGI rather than ``@app.middleware("http")``: that wrapper
    costs a task group per request, which was the largest CPU cost of a prediction here.
    """

    def __init__(self, app: Any, limit: Callable[[str], int]):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length")
            max_bytes = self.limit(scope["path"])
            error = None
            if length is None:
                error = 411, "send a Content-Length header"
            elif not length.isdigit() or int(length) > max_bytes:
                error = 413, (f"payload of {length.decode(errors='replace')} bytes is over "
                              f"the limit of {max_bytes} bytes (serving.max_body_bytes); "
                              "split the records over several requests")
            if error:
                await JSONResponse({"error": error[1], "detail": []},
                                   status_code=error[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def body_limits(config: ServiceConfig) -> Callable[[str], int]:
    """The byte limit of a request path: its model's, else the default model's."""
    limits = {m.name: m.serving.max_body_bytes for m in config.models}
    fallback = limits.get(config.default_model or "", max(limits.values(), default=1_000_000))

    def limit(path: str) -> int:
        if path.startswith("/v2/models/"):
            return limits.get(path.split("/", 4)[3], fallback)
        return fallback

    return limit


@dataclass(frozen=True)
class Caller:
    """An admitted inference request: whose key, and which model it asks."""

    key: str
    model: ModelRuntime


@dataclass(frozen=True)
class CallerDependencies:
    default: Callable[..., Any]  # for /predict: the default model
    named: Callable[..., Any]  # for /v2/models/{name}/...: the model the path names


def caller_dependencies(service: Service, keys: ApiKeys) -> CallerDependencies:
    """FastAPI dependencies resolving a request's key, model and rate limit, in that order."""
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="API key (`python -m cli.deployctl api-key NAME`)")
    names = service.config.names

    async def authorized(request: Request, api_key: str | None = Depends(key_header)) -> str:
        auth = request.headers.get("authorization", "")
        presented = api_key or (auth[7:] if auth.lower().startswith("bearer ") else None)
        name = keys.verify(presented)
        if name is None:
            raise ServiceError(401, "missing API key: send X-API-Key (or Authorization: Bearer)"
                               if not presented else "unknown API key",
                               headers={"WWW-Authenticate": "Bearer"})
        return name

    async def admit(key: str, model: ModelRuntime) -> Caller:
        per_minute = model.config.serving.rate_limit_per_minute
        allowed, reset = await service.shared.limiter.hit(key, model.name, per_minute)
        if not allowed:
            service.shared.metrics.rate_limited.labels(model=model.name, key=key).inc()
            raise ServiceError(429, f"rate limit of {per_minute} requests per minute to "
                               f"model {model.name!r} exceeded for this key",
                               headers={"Retry-After": str(int(reset) + 1)})
        return Caller(key, model)

    async def default(key: str = Depends(authorized)) -> Caller:
        return await admit(key, service.default())

    async def named(name: str = Path(description="the model's name (its dataset spec's name)",
                                     json_schema_extra={"enum": names} if names else None),
                    key: str = Depends(authorized)) -> Caller:
        return await admit(key, service.lookup(name))

    return CallerDependencies(default, named)
