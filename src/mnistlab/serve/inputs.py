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
from typing import Any

import numpy as np
from starlette.requests import Request

from mnistlab.errors import MnistlabError
from mnistlab.predict.preprocess import from_array, prepare
from mnistlab.predict.segment import DigitCrop, NumberLimitError, segment_digits
from mnistlab.serve.limits import IMAGE_FORMATS, SCALE_KEY, ApiError, Limits, decode_image

try:  # python-multipart >= 0.0.13; before that the module was called `multipart`
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover
    from multipart.multipart import MultipartParser, parse_options_header  # type: ignore

FILE_FIELDS = ("file", "image")
MAX_JSON_DEPTH = 16  # {"images": [{"pixels": [[...]]}]} needs 4
MAX_PARTS = 1000  # parts of a multipart body
JSON_KEYS = ("image", "pixels")
ACCEPTED = ("multipart/form-data", "application/json", *IMAGE_FORMATS.values())


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_media_type(request: Request) -> None:
    kind = media_type(request)
    if kind not in ACCEPTED:
        raise ApiError(415, f"content type '{kind or 'none'}' is not accepted: send "
                            "multipart/form-data, image/png, image/jpeg or application/json")


def parse_items(content_type: str, body: bytes, batch: bool,
                limits: Limits) -> list[tuple[str, Any]]:
    """A request's body -> its images, unprocessed, as (field name, bytes or pixel list)
    pairs. CPU work on untrusted bytes: called in a worker thread, never on the event loop."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        items = multipart_items(content_type, body)
    elif kind in IMAGE_FORMATS.values():
        items = [("body", body)]
    elif kind == "application/json":
        items = _json_items(body, batch)
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


def multipart_items(content_type: str, body: bytes) -> list[tuple[str, Any]]:
    """The file parts of a multipart/form-data body (all of it in memory: the body is capped),
    parsed by python-multipart's streaming parser, synchronously."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed multipart body (no boundary in the content type)")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytearray] = {"name": bytearray(), "value": bytearray()}

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise ApiError(400, f"malformed multipart body (more than {MAX_PARTS} parts)")
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][bytes(header["name"]).lower()] = bytes(header["value"])
        header["name"], header["value"] = bytearray(), bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    try:
        parser = MultipartParser(boundary, {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field,
            "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_part_data": on_part_data})
        parser.write(body)
        parser.finalize()
    except ApiError:
        raise
    except Exception as e:  # python-multipart raises several types for bad bodies
        raise ApiError(400, f"malformed multipart body ({str(e)[:200] or type(e).__name__})"
                       ) from None
    items = []
    for part in parts:
        disposition, options = parse_options_header(part["headers"].get(b"content-disposition",
                                                                         b""))
        if disposition != b"form-data" or b"name" not in options:
            raise ApiError(400, "malformed multipart body (a part without a form-data name)")
        key = options[b"name"].decode("utf-8", "replace")
        if key not in FILE_FIELDS:
            raise ApiError(400, f"unknown form field '{key[:100]}' (send the image as 'file')")
        if b"filename" not in options:
            raise ApiError(400, f"form field '{key}' must be a file upload, not text")
        items.append((f"{key}[{len(items)}]", bytes(part["data"])))
    return items


def _json_items(body: bytes, batch: bool) -> list[tuple[str, Any]]:
    # json.loads is linear in the body, and deep nesting ends it with a RecursionError after
    # about a thousand levels; the depth is checked on the parsed document.
    try:
        doc = json.loads(body)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise ApiError(400, f"malformed JSON: {str(e)[:200]}") from None
    except RecursionError:
        raise ApiError(400, f"JSON nested too deeply; the limit is {MAX_JSON_DEPTH} "
                            "levels") from None
    depth = json_depth(doc)
    if depth > MAX_JSON_DEPTH:
        raise ApiError(400, f"JSON nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    if not isinstance(doc, dict):
        raise ApiError(400, "JSON body must be an object, e.g. {\"image\": \"<base64 PNG>\"}")
    if batch:
        entries = doc.get("images")
        if not isinstance(entries, list):
            raise ApiError(400, "JSON body for /predict/batch needs \"images\": a list of "
                                "{\"image\": ...} or {\"pixels\": ...} objects")
        return [_json_item(entry, f"images[{i}]") for i, entry in enumerate(entries)]
    return [_json_item(doc, "body")]


def json_depth(doc: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON document (iteratively: no
    recursion, and each value is visited once)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((v, depth + 1) for v in value if isinstance(v, (list, dict)))
    return deepest


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
        digit = from_array(pixel_array(field, item))
        if not digit.any():  # prepare refuses a blank picture; refuse a blank array alike
            raise MnistlabError("empty image: no ink found")
        return digit, []
    except MnistlabError as e:
        raise refusal(field, e) from None


def pixel_array(field: str, item: Any) -> np.ndarray:
    """JSON `pixels` -> a float64 array. Numbers only: true/false and "12" are refused, not
    read as 1 and 12."""
    try:
        values = np.array(item, dtype=object)
        if not all(type(v) in (int, float) for v in values.flat):
            raise TypeError
        return np.asarray(item, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, f"{field}: must be a 28x28 list of numbers") from None


def to_number(field: str, item: Any, limits: Limits,
              deadline: float | None = None) -> list[DigitCrop]:
    """One picture -> its digits left to right, boxes in the picture's own pixels. At most
    `limits.max_pieces` pieces of ink and `limits.max_digits` digits, read by `deadline` (a
    time.monotonic() value), else a 422 that says which."""
    if not isinstance(item, bytes):
        raise ApiError(400, f"{field}: number=true needs a picture (an image upload or "
                            "\"image\"), not 28x28 pixels")
    try:
        image = decode_image(item, limits, field)
        crops = segment_digits(image, max_pieces=limits.max_pieces,
                               max_digits=limits.max_digits, deadline=deadline)
        if not crops:
            raise MnistlabError("empty image: no ink found")
    except MnistlabError as e:
        raise refusal(field, e) from None
    scale = float(image.info.get(SCALE_KEY, 1.0))
    return [DigitCrop(tuple(round(v * scale) for v in crop.box), crop.array)  # type: ignore[arg-type]
            for crop in crops]


def refusal(field: str, error: MnistlabError) -> ApiError:
    # The request was well formed, but there is nothing (or too much) to read.
    status = 422 if isinstance(error, NumberLimitError) or "no ink" in str(error) else 400
    return ApiError(status, f"{field}: {error}")
