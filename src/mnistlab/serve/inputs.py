"""Turn a request body into digits in MNIST form: uint8 (28, 28) arrays, white on black.

Accepted bodies, for `/predict` (one image) and `/predict/batch` (many):

    multipart/form-data   field `file` (or `image`); batch: repeat the field
    image/png, image/jpeg the raw image bytes (one image)
    application/json      {"image": "<base64 or data: URL>"} or {"pixels": 28x28 numbers};
                          batch: {"images": [ {...}, {...} ]}

Uploaded pictures go through the same MNIST-style preprocessing as `mnistlab predict`
(mnistlab.predict.preprocess.prepare, or segment_digits for a whole number); 28x28 arrays
are taken to be in MNIST form already.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from mnistlab.errors import MnistlabError
from mnistlab.predict.preprocess import from_array, prepare
from mnistlab.predict.segment import DigitCrop, segment_digits
from mnistlab.serve.limits import IMAGE_FORMATS, SCALE_KEY, ApiError, Limits, decode_image

FILE_FIELDS = ("file", "image")
MAX_JSON_DEPTH = 16  # {"images": [{"pixels": [[...]]}]} needs 4
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
OPENERS, CLOSERS = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)
JSON_KEYS = ("image", "pixels")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_items(request: Request, batch: bool, limits: Limits) -> list[tuple[str, Any]]:
    """The request's images, unprocessed, as (field name, bytes or pixel list) pairs."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        items = await _multipart(request)
    elif kind in IMAGE_FORMATS.values():
        items = [("body", await request.body())]
    elif kind == "application/json":
        items = _json_items(await request.body(), batch)
    else:
        raise ApiError(415, f"content type '{kind or 'none'}' is not accepted: send "
                            "multipart/form-data, image/png, image/jpeg or application/json")
    if not items:
        raise ApiError(400, "no image in the request")
    if not batch and len(items) > 1:
        raise ApiError(400, f"{len(items)} images sent to /predict; use /predict/batch")
    if len(items) > limits.max_batch:
        raise ApiError(413, f"{len(items)} images in one request; the limit is {limits.max_batch}")
    return items


async def _multipart(request: Request) -> list[tuple[str, Any]]:
    try:
        form = await request.form(max_files=1000, max_fields=1000)
    except Exception as e:  # python-multipart/starlette raise several types for bad bodies
        raise ApiError(400, f"malformed multipart body ({getattr(e, 'detail', e)})") from None
    items = []
    for key, value in form.multi_items():
        if key not in FILE_FIELDS:
            raise ApiError(400, f"unknown form field '{key}' (send the image as 'file')")
        if not isinstance(value, UploadFile):
            raise ApiError(400, f"form field '{key}' must be a file upload, not text")
        items.append((f"{key}[{len(items)}]", await value.read()))
    await form.close()
    return items


def _json_items(body: bytes, batch: bool) -> list[tuple[str, Any]]:
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:  # refused before parsing: the parser recurses per level
        raise ApiError(400, f"JSON nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    try:
        doc = json.loads(body)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise ApiError(400, f"malformed JSON: {e}") from None
    except RecursionError:  # should not happen below MAX_JSON_DEPTH; never a 500 if it does
        raise ApiError(400, "JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "JSON body must be an object, e.g. {\"image\": \"<base64 PNG>\"}")
    if batch:
        entries = doc.get("images")
        if not isinstance(entries, list):
            raise ApiError(400, "JSON body for /predict/batch needs \"images\": a list of "
                                "{\"image\": ...} or {\"pixels\": ...} objects")
        return [_json_item(entry, f"images[{i}]") for i, entry in enumerate(entries)]
    return [_json_item(doc, "body")]


def json_depth(body: bytes) -> int:
    """The deepest nesting of [ and { in a JSON text, outside strings (C-speed scans only:
    2 MB take a few ms)."""
    bare = np.frombuffer(JSON_STRING.sub(b'""', body), dtype=np.uint8)
    steps = (np.isin(bare, OPENERS).astype(np.int32) - np.isin(bare, CLOSERS))
    return int(np.cumsum(steps).max(initial=0))


def _json_item(entry: Any, where: str) -> tuple[str, Any]:
    if not isinstance(entry, dict):
        raise ApiError(400, f"{where}: must be an object with \"image\" or \"pixels\"")
    present = [k for k in JSON_KEYS if k in entry]
    if len(present) != 1:
        raise ApiError(400, f"{where}: needs exactly one of \"image\" (base64 PNG/JPEG) or "
                            "\"pixels\" (28x28 numbers)")
    key = present[0]
    value = entry[key]
    if key == "pixels":
        return f"{where}.pixels", value
    if not isinstance(value, str):
        raise ApiError(400, f"{where}.image: must be a base64 string")
    if value.startswith("data:"):  # a data URL, as canvas.toDataURL() gives
        value = value.partition(",")[2]
    try:
        return f"{where}.image", base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}.image: not valid base64") from None


def to_digit(field: str, item: Any, limits: Limits) -> tuple[np.ndarray, list[str]]:
    """One item -> (uint8 (28, 28), what looks wrong with it as a digit). Empty canvases are
    a 422: the request was well formed."""
    try:
        if isinstance(item, bytes):
            prepared = prepare(decode_image(item, limits, field))
            return prepared.array, list(prepared.problems)
        try:
            array = np.asarray(item, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise ApiError(400, f"{field}: must be a 28x28 list of numbers") from None
        digit = from_array(array)
        if not digit.any():  # prepare refuses a blank picture; refuse a blank array alike
            raise MnistlabError("empty image: no ink found")
        return digit, []
    except MnistlabError as e:
        raise refusal(field, e) from None


def to_number(field: str, item: Any, limits: Limits) -> list[DigitCrop]:
    """One picture -> its digits left to right, boxes in the picture's own pixels."""
    if not isinstance(item, bytes):
        raise ApiError(400, f"{field}: number=true needs a picture (an image upload or "
                            "\"image\"), not 28x28 pixels")
    try:
        image = decode_image(item, limits, field)
        crops = segment_digits(image)
    except MnistlabError as e:
        raise refusal(field, e) from None
    scale = float(image.info.get(SCALE_KEY, 1.0))
    return [DigitCrop(tuple(round(v * scale) for v in crop.box), crop.array)  # type: ignore[arg-type]
            for crop in crops]


def refusal(field: str, error: MnistlabError) -> ApiError:
    status = 422 if "no ink" in str(error) else 400
    return ApiError(status, f"{field}: {error}")
