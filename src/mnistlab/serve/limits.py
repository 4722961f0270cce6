"""What the server accepts, and how it refuses the rest: a 4xx with a JSON message, never a 500
or a hang.

Defences, outermost first: a cap on the request body (checked against Content-Length and again
while the bytes arrive, with a deadline so a slow client cannot hold a worker), a whitelist of
content types and image formats, and a check of the image's dimensions read from its header
*before* any pixel is decoded (so a small PNG that inflates to gigabytes is refused unread).
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 2 * 1024 * 1024  # whole request
    max_side: int = 4096  # pixels, either dimension of an uploaded image
    max_batch: int = 64  # images in one /predict/batch request
    body_timeout_s: float = 10.0  # to receive the whole body once the headers are in

    @property
    def max_pixels(self) -> int:
        return self.max_side * self.max_side


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
        image.load()
        return ImageOps.exif_transpose(image) or image  # photos taken sideways
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ApiError(400, f"{field}: unreadable {image.format} image "
                            f"({str(e).strip() or type(e).__name__})") from None


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


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
        body = error_body(message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
