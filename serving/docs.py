"""The API docs: ``/docs`` (Swagger UI) and ``/redoc`` with every asset served from here.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet
they stay blank. These pages are FastAPI's, pointed at the Swagger UI dist and the ReDoc
standalone bundle that the ``fastapi-offline`` package ships, mounted under
:data:`ASSETS_URL`. Like ``/openapi.json`` they need no API key.

The OpenAPI document lists the known values of the default model's categorical fields
(``serving.schema.KnownValues``), which change when another version becomes stable; it is
rebuilt then, instead of being kept from the first request as FastAPI does.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from serving.schema import KnownValues

# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png, in its static/.
ASSETS_PACKAGE = "fastapi_offline"
ASSETS_URL = "/docs/assets"
# The pages load nothing from another host. ReDoc's sidebar credit links an image on its
# CDN (hidden when it fails to load): the browser is told not to try. Inline scripts and
# styles are FastAPI's page and ReDoc's own; ReDoc's search runs in a blob: worker.
PAGE_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
               "worker-src 'self' blob:; connect-src 'self'")


def add_docs_routes(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` for an app created with ``docs_url=None, redoc_url=None``.

    Raises:
        RuntimeError: the package holding the assets is not installed.
    """
    if importlib.util.find_spec(ASSETS_PACKAGE) is None:
        raise RuntimeError("serving/docs.py: package fastapi-offline (the Swagger UI and "
                           "ReDoc files of /docs and /redoc) is not installed; run make install")
    # Found by location, not imported: the package's own code is not used.
    app.mount(ASSETS_URL, StaticFiles(packages=[(ASSETS_PACKAGE, "static")]),
              name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def offline(page: HTMLResponse) -> HTMLResponse:
        page.headers["Content-Security-Policy"] = PAGE_POLICY
        return page

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return offline(get_swagger_ui_html(
            openapi_url=base + openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS_URL}/favicon.png",
            # No request to the online spec validator (its badge is off in this layout).
            swagger_ui_parameters={"validatorUrl": None}))

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return offline(get_redoc_html(
            openapi_url=base + openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS_URL}/favicon.png", with_google_fonts=False))


def follow_known_values(app: FastAPI, known: KnownValues | None) -> None:
    """Rebuild the OpenAPI document when ``known`` (the default model's values) changes."""
    built_from: list[str | None] = []

    def openapi() -> dict[str, Any]:
        source = None if known is None else known.source
        if app.openapi_schema is None or built_from != [source]:
            app.openapi_schema = None
            built_from[:] = [source]
        return FastAPI.openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
