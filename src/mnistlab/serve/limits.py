"""What the server accepts, and how it refuses the rest: a 4xx/5xx with a JSON message, never a
plain-text page, a traceback or a hang.

Defences, outermost first (see docs/serve.md, "Limits"):

- connections (mnistlab.serve.connections): a request's headers must arrive within
  `header_timeout_s` of the connection opening or of its previous answer, trickled or not;
  past `max_connections` the longest-waiting idle connection is closed to make room;
- the Host header must be one of `allowed_hosts` (loopback names when bound to loopback), so a
  DNS-rebinding page cannot use the API;
- the request body is capped (Content-Length, and again while the bytes arrive) and must
  arrive within `body_timeout_s`;
- at most `max_requests` requests are processed at once; beyond that a 503 at once;
- bodies are parsed (JSON, multipart) in worker threads, never on the event loop;
- content types and image formats are whitelisted, and an image's dimensions are read from its
  header *before* any pixel is decoded (a small PNG that inflates to gigabytes is refused
  unread); images are decoded at most `max_decodes` at a time and reduced to `work_side` px
  (JPEG: by the decoder itself) before any conversion to floating point;
- whole-number requests (`?number=true`) have slots of their own (`max_numbers`), so they
  cannot starve single digits, a bound on the pieces of ink and digits they read, and a time
  budget (`number_budget_s`).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
from dataclasses import dataclass, field

import anyio
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistlab.predict.preprocess import MIN_SIDE
from mnistlab.predict.segment import MAX_NUMBER_DIGITS, MAX_NUMBER_PIECES

# The page loads nothing from elsewhere; say so to the browser, on every answer.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
SCALE_KEY = "mnistlab_scale"
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
MAX_HEADER_BYTES = 16 * 1024  # a request's line and headers, however they arrive
# A Host header: a name or an IPv4 address, or an IPv6 address in brackets; then a port.
HOST_HEADER = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::[0-9]{1,5})?")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 2 * 1024 * 1024  # whole request
    max_side: int = 4096  # pixels, either dimension of an uploaded image; larger is refused
    work_side: int = 1024  # larger images are reduced to this before any float conversion
    max_decodes: int = 2  # images decoded and preprocessed at once (each up to ~70 MB)
    max_batch: int = 64  # images in one /predict/batch request
    body_timeout_s: float = 10.0  # to receive the whole body once the headers are in
    header_timeout_s: float = 5.0  # to receive a request's headers (also the keep-alive idle)
    max_connections: int = 256  # open TCP connections; the longest-idle makes room
    max_client_connections: int = 64  # open connections from one client address
    max_requests: int = 64  # requests being processed at once; beyond: 503 at once
    max_numbers: int = 1  # whole-number requests read at once (slots of their own)
    max_pieces: int = MAX_NUMBER_PIECES  # pieces of ink a whole-number picture may hold
    max_digits: int = MAX_NUMBER_DIGITS  # digits a whole number may have
    number_budget_s: float = 3.0  # to wait for a number slot, and again to read the number
    allowed_hosts: tuple[str, ...] | None = None  # Host header names; None: any
    # Waited for on the event loop (a waiting request holds no thread): one set per Limits
    # object, i.e. per app. Whole numbers have their own, so they cannot starve single digits.
    decode_slots: anyio.CapacityLimiter = field(default=None, compare=False,  # type: ignore[assignment]
                                                repr=False)
    number_slots: anyio.CapacityLimiter = field(default=None, compare=False,  # type: ignore[assignment]
                                                repr=False)

    def __post_init__(self) -> None:
        if self.decode_slots is None:
            object.__setattr__(self, "decode_slots", anyio.CapacityLimiter(self.max_decodes))
        if self.number_slots is None:
            object.__setattr__(self, "number_slots", anyio.CapacityLimiter(self.max_numbers))

    @property
    def max_pixels(self) -> int:
        return self.max_side * self.max_side

    def host_allowed(self, host: str | None) -> bool:
        """Whether a Host header (with or without its port) names this server."""
        if self.allowed_hosts is None:
            return True
        if not host:
            return False
        # The whole header must be a host and an optional port: "[::1].evil.com" and
        # "[::1]@evil.com" are not "[::1]".
        match = HOST_HEADER.fullmatch(host.strip().lower())
        if match is None:
            return False
        name = match.group(1)
        return any(name == allowed or (allowed == "localhost" and name.endswith(".localhost"))
                   for allowed in self.allowed_hosts)

    def describe(self) -> dict[str, object]:
        return {"max_body_bytes": self.max_body_bytes, "max_side": self.max_side,
                "work_side": self.work_side, "max_decodes": self.max_decodes,
                "max_batch": self.max_batch, "body_timeout_s": self.body_timeout_s,
                "header_timeout_s": self.header_timeout_s,
                "max_connections": self.max_connections,
                "max_client_connections": self.max_client_connections,
                "max_requests": self.max_requests, "max_numbers": self.max_numbers,
                "max_pieces": self.max_pieces, "max_digits": self.max_digits,
                "number_budget_s": self.number_budget_s}


class ApiError(Exception):
    """A refusal the client caused: becomes `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def decode_image(data: bytes, limits: Limits, field: str = "image") -> Image.Image:
    """PNG or JPEG bytes -> a decoded PIL image, or an ApiError naming `field`."""
    if not data:
        raise ApiError(400, f"{field}: empty upload (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise ApiError(415, f"{field}: not a PNG or JPEG image") from None
    except Image.DecompressionBombError as e:
        raise ApiError(413, f"{field}: image too large ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:  # a damaged header, e.g. cut short
        raise ApiError(400, f"{field}: unreadable image header "
                            f"({str(e).strip() or type(e).__name__})") from None
    if image.format not in IMAGE_FORMATS:
        raise ApiError(415, f"{field}: {image.format} images are not accepted "
                            f"(send {' or '.join(IMAGE_FORMATS)})")
    width, height = image.size
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise ApiError(413, f"{field}: image is {width}x{height} px; the limit is "
                            f"{limits.max_side} px a side")
    if width == 0 or height == 0:
        raise ApiError(400, f"{field}: image has no pixels ({width}x{height})")
    try:
        # A 4096x4096 picture holds far more than a 28x28 digit needs: reduce it before any
        # conversion to floating point (which costs 8 bytes a pixel, several times over).
        # JPEG decodes at 1/2, 1/4 or 1/8 scale directly; PNG is reduced right after decoding.
        if image.format == "JPEG":
            image.draft(None, (limits.work_side, limits.work_side))
        image.load()
        # Never reduced below a digit's smallest side (a strip keeps its width, and an error
        # about its size names the size that was sent).
        factor = min(math.ceil(max(image.size) / limits.work_side),
                     max(1, min(image.size) // MIN_SIDE))
        if factor > 1:
            image = reduced(image, factor)
        scale = width / image.size[0]  # original pixels per decoded pixel
        image = ImageOps.exif_transpose(image) or image  # photos taken sideways
        image.info[SCALE_KEY] = scale  # boxes found in it are scaled back by this
        return image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ApiError(400, f"{field}: unreadable {image.format} image "
                            f"({str(e).strip() or type(e).__name__})") from None


def reduced(image: Image.Image, factor: int) -> Image.Image:
    """`image` shrunk by an integer factor, averaging boxes of pixels (no float copy)."""
    if image.mode in ("1", "P", "I;16", "I;16B", "I;16L", "I;16N"):
        # Modes Image.reduce does not take: palette to RGBA (keeps transparency), 16-bit to I.
        image = image.convert("RGBA" if image.mode == "P" else "L" if image.mode == "1" else "I")
    return image.reduce(factor)


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def send_json(send, status: int, message: str, extra: tuple = ()) -> None:
    """A JSON error answer through an ASGI `send`, with any `extra` headers."""
    body = error_body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


def raw_json_response(status: int, message: str, reason: str) -> bytes:
    """A complete HTTP/1.1 answer written straight to a socket (outside any ASGI app): JSON,
    the security headers, and the connection closed after it."""
    body = error_body(message)
    lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close",
             *(f"{k}: {v}" for k, v in SECURITY_HEADERS.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class BodyLimitMiddleware:
    """Pure ASGI middleware: read the body up to `max_body_bytes` within `body_timeout_s`, then
    hand it to the app; refuse with 413 / 408 as soon as either limit is passed."""

    def __init__(self, app, limits: Limits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await self._refuse(send, 400, "Content-Length header is not a number")
                return
            if too_big:
                await self._refuse(send, 413, self._too_big_message(int(declared)))
                return
        try:
            body = await asyncio.wait_for(self._read(receive, limit), self.limits.body_timeout_s)
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            await self._refuse(send, 408, f"request body not received within "
                                          f"{self.limits.body_timeout_s:g} s")
            return
        except ApiError as e:
            await self._refuse(send, e.status, e.message)
            return
        if body is None:  # the client went away
            return
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as ASGI does

        await self.app(scope, replay, send)

    def _too_big_message(self, size: int) -> str:
        return (f"request body is {size:,} bytes; the limit is "
                f"{self.limits.max_body_bytes:,} bytes")

    async def _read(self, receive, limit: int) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body exceeds the limit of {limit:,} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _refuse(send, status: int, message: str) -> None:
        await send_json(send, status, message, ((b"connection", b"close"),))
