"""The HTTP API and the drawing page.

    GET  /                 the drawing page (static/index.html, with its CSS and JavaScript)
    GET  /healthz          {"status": "ok"}
    GET  /model            name, parameters, data set, classes, test accuracy of its run
    POST /predict          one image  -> label, class, probability, probabilities, is_digit,
                                         input (28x28)
    POST /predict?number=true  a picture of a number -> text, digits (label, box, ...)
    POST /predict/batch    many       -> {"predictions": [...]}
    POST /activations      one image  -> {"prediction": {...}, "layers": [feature maps]}

Every refusal is a 4xx with {"error": "<one line>"}; see mnistlab.serve.limits. A bug is a
JSON 500, with the security headers like every other answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnistlab import __version__
from mnistlab.serve.inputs import check_media_type, parse_items, to_digit, to_number
from mnistlab.serve.limits import (
    SECURITY_HEADERS,
    ApiError,
    BodyLimitMiddleware,
    Limits,
    send_json,
)
from mnistlab.serve.service import DigitModel

log = logging.getLogger("mnistlab.serve")
STATIC = resources.files("mnistlab.serve") / "static"
T = TypeVar("T")


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

    # Bugs (any other exception) become a JSON 500 in GuardMiddleware, with the headers.

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        return {**service.info(), "limits": limits.describe()}

    @app.post("/predict")
    async def predict_one(request: Request) -> dict[str, Any]:
        if number_requested(request):
            crops = await _number(request)
            return await run_in_threadpool(service.predict_number, crops)
        digits, problems = await _digits(request, batch=False)
        return (await run_in_threadpool(service.predict, digits, problems))[0]

    @app.post("/predict/batch")
    async def predict_batch(request: Request) -> dict[str, Any]:
        if number_requested(request):
            raise ApiError(400, "number=true is for /predict (one picture of a number)")
        digits, problems = await _digits(request, batch=True)
        return {"predictions": await run_in_threadpool(service.predict, digits, problems)}

    @app.post("/activations")
    async def activations(request: Request) -> dict[str, Any]:
        if number_requested(request):
            raise ApiError(400, "number=true is for /predict (one picture of a number)")
        digits, problems = await _digits(request, batch=False)
        return await run_in_threadpool(service.predict_with_feature_maps, digits[0],
                                       problems[0])

    async def _items(request: Request, batch: bool) -> list[tuple[str, Any]]:
        check_media_type(request)
        body = await request.body()  # already read, within its limits, by BodyLimitMiddleware
        # Parsing untrusted bytes is CPU work: in a thread, never on the event loop.
        return await run_in_threadpool(parse_items, request.headers.get("content-type", ""),
                                       body, batch, limits)

    async def _digits(request: Request, batch: bool) -> tuple[np.ndarray, list[list[str]]]:
        items = await _items(request, batch)

        def decode() -> list[tuple[np.ndarray, list[str]]]:
            return [to_digit(field, item, limits) for field, item in items]

        # A bounded number at a time: a large picture costs tens of MB while decoded.
        decoded = await in_slot(limits.decode_slots, decode)
        return np.stack([d for d, _ in decoded]), [p for _, p in decoded]

    async def _number(request: Request) -> list:
        ((field, item),) = await _items(request, False)
        budget = limits.number_budget_s

        def read() -> list:
            return to_number(field, item, limits, time.monotonic() + budget)

        # Slots of their own, so numbers never hold up single digits; and a bounded wait.
        return await in_slot(limits.number_slots, read, wait_s=budget,
                             busy=f"server busy: {limits.max_numbers} number(s) being read; "
                                  "retry shortly")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    # Added last = outermost: headers and Host first, then the body cap (before any route or
    # parser sees a byte), then the cap on requests being processed.
    app.add_middleware(RequestLimitMiddleware, limits=limits)
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    app.add_middleware(GuardMiddleware, limits=limits)
    return app


async def in_slot(slots: anyio.CapacityLimiter, work: Callable[[], T],
                  wait_s: float | None = None, busy: str = "server busy") -> T:
    """Run `work` in a worker thread once one of `slots` is free. The wait is on the event
    loop, so waiting requests hold no thread; past `wait_s` seconds it is a 503 (`busy`)."""
    try:
        with anyio.fail_after(wait_s):
            await slots.acquire()
    except TimeoutError:
        raise ApiError(503, busy) from None
    try:
        return await anyio.to_thread.run_sync(work)
    finally:
        slots.release()


def number_requested(request: Request) -> bool:
    """The `number` query parameter: read the picture as a whole number, digit by digit."""
    value = request.query_params.get("number", "false").strip().lower()
    if value not in ("true", "1", "false", "0", ""):
        raise ApiError(400, f"number: expected true or false, got '{value[:20]}'")
    return value in ("true", "1")


class GuardMiddleware:
    """Outermost: the security headers on every answer (refusals included), and the Host
    header checked against the allow-list (a DNS-rebinding page sends its own name)."""

    HEADERS = tuple((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())
    NAMES = frozenset(k for k, _ in HEADERS)

    def __init__(self, app, limits: Limits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in self.NAMES]
                message = {**message, "headers": [*headers, *self.HEADERS]}
            await send(message)

        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if not self.limits.host_allowed(host):
            allowed = ", ".join(self.limits.allowed_hosts or ())
            await send_json(send_with_headers, 400, f"Host header '{host[:100]}' is not "
                            f"allowed (this server answers to: {allowed}; see --allowed-hosts)")
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as e:  # a bug: logged here, answered as JSON with the headers
            log.exception("unexpected error")
            if not started:
                await send_json(send_with_headers, 500, f"internal error ({type(e).__name__})")
            # else half an answer went out: uvicorn closes the connection


class RequestLimitMiddleware:
    """At most `max_requests` requests processed at once (counted once their body is in, so
    slow senders do not hold a place); beyond that a JSON 503 at once, not a queue."""

    def __init__(self, app, limits: Limits) -> None:
        self.app, self.limits, self.active = app, limits, 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limits.max_requests:
            await send_json(send, 503, f"server busy: {self.limits.max_requests} requests "
                                       "in progress; retry shortly", ((b"retry-after", b"1"),))
            return
        self.active += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
