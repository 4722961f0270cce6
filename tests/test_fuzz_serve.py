"""Property-based fuzzing (Hypothesis) of the server's way in: the JSON and multipart parsers,
the image and pixel readers behind them, and whole requests through the app.

The property: a body, however malformed, is either read or refused with an ApiError (a 4xx);
over HTTP, every answer is a JSON 2xx/4xx with the security headers - never a 500 - and
every call ends within a bound (Hypothesis's deadline). Profiles: see test_fuzz_images.py
(MNISTLAB_FUZZ=long for the long one).
"""

from __future__ import annotations

import base64
import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import serve_extras  # noqa: F401 - skips this module (fails in CI) without the serve extra

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from mnistlab.serve.app import create_app
from mnistlab.serve.inputs import parse_items, to_digit, to_number
from mnistlab.serve.limits import SECURITY_HEADERS, ApiError, Limits, decode_image
from mnistlab.serve.service import DigitModel
from test_fuzz_images import PROFILE, image_bytes
from test_serve import make_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LIMITS = Limits()
ENDPOINTS = ("/predict", "/predict?number=true", "/predict/batch", "/activations")

# JSON values of every kind, nested a little.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=5),
    max_leaves=30)


@st.composite
def pixel_grids(draw):
    """28x28 (or nearly) grids of numbers, or of things that are not numbers."""
    rows, cols = draw(st.sampled_from([(28, 28), (28, 27), (1, 28), (0, 0)]))
    value = draw(st.sampled_from(["int", "float", "big", "mixed"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    grid = rng.integers(0, 256, (rows, cols)).tolist() if value != "float" else \
        rng.random((rows, cols)).tolist()
    if value == "big" and rows:
        grid[0][0] = draw(st.sampled_from([10**400, -1, 256, 1e308, -0.0]))
    if value == "mixed" and rows:
        grid[rows // 2][cols // 2] = draw(json_values)
    return grid


@st.composite
def image_entries(draw):
    kind = draw(st.sampled_from(("image", "data-url", "pixels", "other")))
    if kind == "pixels":
        return {"pixels": draw(pixel_grids())}
    if kind == "other":
        return draw(st.dictionaries(st.sampled_from(["image", "pixels", "x"]), json_values,
                                    max_size=2))
    text = base64.b64encode(draw(image_bytes())).decode()
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # cut: maybe not base64 any more
    return {"image": ("data:image/png;base64," if kind == "data-url" else "") + text}


@st.composite
def json_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(("one", "batch", "value", "bytes", "string")))
    if kind == "one":
        doc = draw(image_entries())
    elif kind == "batch":
        doc = {"images": draw(st.lists(image_entries(), max_size=4))}
    elif kind == "value":
        doc = draw(json_values)
    elif kind == "string":  # a string that never closes: the old parser's quadratic case
        return b'{"image": "' + b'"\\' * draw(st.integers(0, 4000))
    else:
        return draw(st.binary(max_size=400))
    text = json.dumps(doc).encode()
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return text


@st.composite
def multipart_bodies(draw) -> tuple[str, bytes]:
    boundary = draw(st.sampled_from(["x", "----b0und4ry", "a" * 70]))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["file", "image", "other", ""]))
        disposition = f'form-data; name="{name}"' if name else "form-data"
        if draw(st.booleans()):
            disposition += '; filename="a.png"'
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                     f"Content-Type: image/png\r\n\r\n".encode() + draw(image_bytes()) + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=300))
    header = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}",
                                   "multipart/form-data", "multipart/form-data; boundary=",
                                   f'multipart/form-data; boundary="{boundary}"']))
    return header, body


@st.composite
def requests(draw) -> tuple[str, str, bytes]:
    """(content type, body, endpoint)."""
    kind = draw(st.sampled_from(("json", "multipart", "png", "jpeg", "other")))
    if kind == "json":
        content_type, body = "application/json", draw(json_bodies())
    elif kind == "multipart":
        content_type, body = draw(multipart_bodies())
    elif kind == "other":
        content_type = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                    max_size=30))
        body = draw(st.binary(max_size=100))
    else:
        content_type, body = f"image/{kind}", draw(image_bytes())
    return content_type, body, draw(st.sampled_from(ENDPOINTS))


def read(content_type: str, body: bytes, batch: bool, number: bool) -> None:
    """What the app does with a body, minus the model: every ApiError is a 4xx."""
    try:
        items = parse_items(content_type, body, batch, LIMITS)
        for field, item in items:
            if number:
                to_number(field, item, LIMITS)
            else:
                to_digit(field, item, LIMITS)
    except ApiError as e:
        assert 400 <= e.status < 500 and e.message and "\n" not in e.message


@PROFILE
@given(json_bodies(), st.booleans(), st.booleans())
def test_json_parser_refuses_only_with_4xx(body, batch, number):
    read("application/json", body, batch, number and not batch)


@PROFILE
@given(multipart_bodies(), st.booleans(), st.booleans())
def test_multipart_parser_refuses_only_with_4xx(content_and_body, batch, number):
    content_type, body = content_and_body
    read(content_type, body, batch, number and not batch)


@PROFILE
@given(image_bytes())
def test_image_decoder_refuses_only_with_4xx(data):
    try:
        decode_image(data, LIMITS, "file")
    except ApiError as e:
        assert 400 <= e.status < 500


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    service = DigitModel.load(make_run(tmp_path_factory.mktemp("fuzz") / "run"),
                              torch.device("cpu"))
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield client


@PROFILE
@given(requests())
def test_no_request_gets_a_500(client, request_parts):
    content_type, body, endpoint = request_parts
    response = client.post(endpoint, content=body, headers={"content-type": content_type})
    assert response.status_code in (200, 400, 413, 415, 422), response.text
    assert set(response.json()) >= ({"error"} if response.status_code >= 400 else set())
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value
