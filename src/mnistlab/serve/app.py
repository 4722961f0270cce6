"""The HTTP API and the drawing page.

    GET  /                 the drawing page (static/index.html, with its CSS and JavaScript)
    GET  /healthz          {"status": "ok"}
    GET  /model            name, parameters, data set, classes, test accuracy of its run
    POST /predict          one image  -> label, class, probability, probabilities, input (28x28)
    POST /predict/batch    many       -> {"predictions": [...]}
    POST /activations      one image  -> {"prediction": {...}, "layers": [feature maps]}

Every refusal is a 4xx with {"error": "<one line>"}; see mnistlab.serve.limits.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnistlab import __version__
from mnistlab.serve.inputs import read_items, to_digit
from mnistlab.serve.limits import ApiError, BodyLimitMiddleware, Limits
from mnistlab.serve.service import DigitModel

log = logging.getLogger("mnistlab.serve")
STATIC = resources.files("mnistlab.serve") / "static"
# The page loads nothing from elsewhere; say so to the browser too.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def create_app(service: DigitModel, limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    # No /docs: Swagger UI would load from a CDN. The schema is at /openapi.json.
    app = FastAPI(title="mnistlab", version=__version__, docs_url=None, redoc_url=None)
    app.state.service, app.state.limits = service, limits

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(_request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        return {**service.info(), "limits": {"max_body_bytes": limits.max_body_bytes,
                                             "max_side": limits.max_side,
                                             "max_batch": limits.max_batch}}

    @app.post("/predict")
    async def predict_one(request: Request) -> dict[str, Any]:
        digits = await _digits(request, batch=False)
        return (await run_in_threadpool(service.predict, digits))[0]

    @app.post("/predict/batch")
    async def predict_batch(request: Request) -> dict[str, Any]:
        digits = await _digits(request, batch=True)
        return {"predictions": await run_in_threadpool(service.predict, digits)}

    @app.post("/activations")
    async def activations(request: Request) -> dict[str, Any]:
        digits = await _digits(request, batch=False)

        return await run_in_threadpool(service.predict_with_feature_maps, digits[0])

    async def _digits(request: Request, batch: bool) -> np.ndarray:
        items = await read_items(request, batch, limits)
        # Decoding and preprocessing are CPU work: off the event loop, in parallel.
        digits = await run_in_threadpool(
            lambda: [to_digit(field, item, limits) for field, item in items])
        return np.stack(digits)

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    # Outermost: the body cap applies before any route or parser sees a byte.
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    return app
