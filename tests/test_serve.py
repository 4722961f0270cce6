"""The HTTP API: every endpoint, every way in, and every way a request is refused."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch

import serve_extras  # noqa: F401 - skips this module (fails in CI) without the serve extra

with warnings.catch_warnings():  # starlette's notice about httpx vs httpx2, not ours to fix
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from mnistlab.checkpoint import save_checkpoint
from mnistlab.cli import main
from mnistlab.models import create_model
from mnistlab.predict.preprocess import to_mnist
from mnistlab.serve.app import create_app
from mnistlab.serve.limits import BodyLimitMiddleware, Limits
from mnistlab.serve.service import DigitModel

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def make_run(folder, model_name: str = "lenet5", summary: dict | None = None):
    torch.manual_seed(0)
    model = create_model(model_name)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "best.pt", {
        "model": model.mnistlab_spec, "state_dict": model.state_dict(),
        "normalizer": {"mean": 0.1307, "std": 0.3081}, "dataset": "mnist",
        "classes": [str(i) for i in range(10)], "epoch": 1})
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("serve") / "run", summary={"test_accuracy": 0.9876})


@pytest.fixture(scope="module")
def service(run_dir):
    return DigitModel.load(run_dir, torch.device("cpu"))


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service))


def drawn_digit(kind: str = "1", size: int = 200, fmt: str = "PNG") -> bytes:
    """Dark strokes on white paper, as a phone photo or a scanned drawing would be."""
    image = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(image)
    s = size / 200
    if kind == "1":
        pen.line([(100 * s, 20 * s), (100 * s, 180 * s)], fill=0, width=int(16 * s))
    else:  # a 7
        pen.line([(40 * s, 30 * s), (160 * s, 30 * s), (80 * s, 180 * s)], fill=0,
                 width=int(16 * s))
    return encode(image, fmt)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def digit_pixels(seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[5:23, 12:16] = rng.integers(150, 256, size=(18, 4))
    return pixels.tolist()


def expected(service: DigitModel, digit: np.ndarray) -> np.ndarray:
    """Probabilities computed here, without the server, for comparison."""
    with torch.no_grad():
        x = service.normalizer(torch.from_numpy(digit)[None])
        return service.model(x).softmax(1)[0].numpy()


def check_prediction(body: dict, service: DigitModel, digit: np.ndarray) -> None:
    probs = np.array(body["probabilities"])
    assert probs.shape == (10,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert body["label"] == int(probs.argmax())
    assert body["class"] == str(body["label"])
    assert body["probability"] == pytest.approx(probs.max())
    assert np.array_equal(np.array(body["input"], dtype=np.uint8), digit)
    np.testing.assert_allclose(probs, expected(service, digit), atol=1e-5)


# ---- endpoints ---------------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_model_info_reads_the_runs_summary(client, service):
    info = client.get("/model").json()
    assert info["name"] == "lenet5"
    assert info["parameters"] == sum(p.numel() for p in service.model.parameters())
    assert info["test_accuracy"] == 0.9876
    assert info["classes"] == [str(i) for i in range(10)]
    assert info["limits"]["max_body_bytes"] == 2 * 1024 * 1024


def test_model_info_without_a_summary(tmp_path):
    run = make_run(tmp_path / "bare", summary=None)
    info = TestClient(create_app(DigitModel.load(run / "best.pt", torch.device("cpu")))
                      ).get("/model").json()
    assert info["test_accuracy"] is None


def test_predict_pixels(client, service):
    pixels = digit_pixels()
    response = client.post("/predict", json={"pixels": pixels})
    assert response.status_code == 200
    check_prediction(response.json(), service, np.array(pixels, dtype=np.uint8))


def test_predict_pixels_in_0_1_are_scaled(client):
    pixels = (np.array(digit_pixels()) / 255.0).tolist()
    body = client.post("/predict", json={"pixels": pixels}).json()
    assert np.array_equal(np.array(body["input"]), np.array(digit_pixels()))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_predict_upload_is_preprocessed_like_mnistlab_predict(client, service, fmt):
    data = drawn_digit("7", fmt=fmt)
    response = client.post("/predict", files={"file": (f"seven.{fmt.lower()}", data)})
    assert response.status_code == 200
    digit = to_mnist(Image.open(io.BytesIO(data)))
    check_prediction(response.json(), service, digit)
    assert digit.max() == 255 and digit[0].max() == 0  # white on black, framed


def test_predict_raw_png_body(client, service):
    data = drawn_digit("1")
    response = client.post("/predict", content=data, headers={"content-type": "image/png"})
    assert response.status_code == 200
    check_prediction(response.json(), service, to_mnist(Image.open(io.BytesIO(data))))


@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,"])
def test_predict_base64_json(client, service, prefix):
    data = drawn_digit("7")
    response = client.post("/predict", json={"image": prefix + base64.b64encode(data).decode()})
    assert response.status_code == 200
    check_prediction(response.json(), service, to_mnist(Image.open(io.BytesIO(data))))


def test_batch_matches_single_predictions(client):
    images = [drawn_digit("1"), drawn_digit("7"), drawn_digit("7", size=300)]
    files = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    batch = client.post("/predict/batch", files=files)
    assert batch.status_code == 200
    predictions = batch.json()["predictions"]
    assert len(predictions) == 3
    for data, got in zip(images, predictions, strict=True):
        single = client.post("/predict", files={"file": ("x.png", data)}).json()
        assert got["label"] == single["label"]
        np.testing.assert_allclose(got["probabilities"], single["probabilities"], atol=1e-6)


def test_batch_json_mixes_images_and_pixels(client):
    items = [{"pixels": digit_pixels(1)}, {"image": base64.b64encode(drawn_digit()).decode()}]
    response = client.post("/predict/batch", json={"images": items})
    assert response.status_code == 200
    first, second = response.json()["predictions"]
    assert first["input"] == digit_pixels(1)
    assert second["input"] != first["input"] and len(second["probabilities"]) == 10


def test_activations_lenet5(client):
    response = client.post("/activations", json={"pixels": digit_pixels()})
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"]["input"] == digit_pixels()
    layers = body["layers"]
    # The first two conv blocks, each shown after its ReLU (what the next layer sees).
    assert [(layer["conv"], layer["name"], layer["kind"], layer["shape"]) for layer in layers] == [
        ("features.0", "features.1", "ReLU", [6, 24, 24]),
        ("features.3", "features.4", "ReLU", [16, 8, 8])]
    for layer in layers:
        png = base64.b64decode(layer["image"].split(",", 1)[1])
        image = Image.open(io.BytesIO(png))
        _, h, w = layer["shape"]
        assert image.size == (layer["cols"] * (w + 1) - 1, layer["rows"] * (h + 1) - 1)
        assert layer["rows"] * layer["cols"] >= layer["shown"] == layer["channels"]


def test_activations_of_a_model_without_convolutions(tmp_path):
    run = make_run(tmp_path / "mlp", "mlp")
    app = create_app(DigitModel.load(run, torch.device("cpu")))
    body = TestClient(app).post("/activations", json={"pixels": digit_pixels()}).json()
    assert body["layers"] == []
    assert len(body["prediction"]["probabilities"]) == 10


def test_page_and_static_files_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="pad"' in page.text and 'id="clear"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
        assert "http://" not in asset.text and "https://" not in asset.text  # no CDN
    assert "https://" not in page.text and "http://" not in page.text


# ---- refusals ----------------------------------------------------------------------------


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`: a decompression bomb's calling card."""
    data = encode(Image.new("L", (1, 1)))
    ihdr = data[8 + 8 : 8 + 8 + 13]
    new = struct.pack(">II", width, height) + ihdr[8:]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + new) & 0xFFFFFFFF)
    return data[:16] + new + crc + data[33:]


def blank_png() -> bytes:
    return encode(Image.new("L", (280, 280), 255))


TRUNCATED = drawn_digit("7")[:200]
REFUSALS = [
    # (what, request kwargs, status, words in the message)
    ("malformed JSON", {"content": b"{not json", "headers": {"content-type": "application/json"}},
     400, "malformed JSON"),
    ("JSON list", {"json": [1, 2]}, 400, "must be an object"),
    ("JSON without image", {"json": {"img": "x"}}, 400, "exactly one of"),
    ("JSON with both", {"json": {"image": "x", "pixels": []}}, 400, "exactly one of"),
    ("image not a string", {"json": {"image": 5}}, 400, "base64 string"),
    ("bad base64", {"json": {"image": "@@@"}}, 400, "not valid base64"),
    ("base64 of text", {"json": {"image": base64.b64encode(b"hello").decode()}}, 415,
     "not a PNG or JPEG"),
    ("pixels wrong shape", {"json": {"pixels": [[0] * 28] * 27}}, 400, "(28, 28)"),
    ("pixels ragged", {"json": {"pixels": [[0] * 28, [0]]}}, 400, "28x28"),
    ("pixels not numbers", {"json": {"pixels": [["a"] * 28] * 28}}, 400, "28x28"),
    ("pixels too large for a float", {"json": {"pixels": [[10**400] * 28] * 28}}, 400,
     "28x28"),
    ("JSON integer too long", {"content": b'{"pixels": ' + b"1" * 5000 + b"}",
                               "headers": {"content-type": "application/json"}}, 400,
     "malformed JSON"),
    ("pixels out of range", {"json": {"pixels": [[300] * 28] * 28}}, 400, "0-255"),
    ("empty pixels", {"json": {"pixels": [[0] * 28] * 28}}, 422, "no ink"),
    ("blank canvas", {"content": blank_png(), "headers": {"content-type": "image/png"}}, 422,
     "no ink"),
    ("text upload", {"files": {"file": ("a.png", b"just some text")}}, 415, "not a PNG or JPEG"),
    ("empty upload", {"files": {"file": ("a.png", b"")}}, 400, "empty upload"),
    ("GIF", {"files": {"file": ("a.gif", encode(Image.new("L", (9, 9)), "GIF"))}}, 415,
     "GIF images are not accepted"),
    ("truncated PNG", {"files": {"file": ("a.png", TRUNCATED)}}, 400, "unreadable PNG"),
    ("PNG cut in its header", {"files": {"file": ("a.png", TRUNCATED[:20])}}, 400,
     "unreadable image header"),
    ("too wide", {"files": {"file": ("a.png", encode(Image.new("L", (4097, 1))))}}, 413,
     "4097x1"),
    ("claims 5000x5000", {"files": {"file": ("a.png", png_claiming_size(5000, 5000))}}, 413,
     "5000x5000"),
    ("decompression bomb", {"files": {"file": ("a.png", png_claiming_size(60000, 60000))}},
     413, "too large"),
    ("plain text body", {"content": b"7", "headers": {"content-type": "text/plain"}}, 415,
     "text/plain"),
    ("no content type", {"content": b"7"}, 415, "content type"),
    ("unknown form field", {"files": {"picture": ("a.png", b"x")}}, 400, "unknown form field"),
    ("text form field", {"data": {"file": "not a file"}, "files": {"image": ("a.png", b"1")}},
     400, "must be a file upload"),
    ("no image in form", {"headers": {
        "content-type": "multipart/form-data; boundary=x"}, "content": b"--x--\r\n"}, 400,
     "no image"),
    ("malformed multipart", {"content": b"garbage", "headers": {
        "content-type": "multipart/form-data"}}, 400, "multipart"),
    ("two images to /predict", {"files": [("file", ("a.png", b"1")), ("file", ("b.png", b"2"))]},
     400, "/predict/batch"),
    ("body too large", {"content": b"x" * (2 * 1024 * 1024 + 1),
                        "headers": {"content-type": "image/png"}}, 413, "limit"),
]


@pytest.mark.parametrize(("what", "request_kwargs", "status", "words"), REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_refusals_are_4xx_json(client, what, request_kwargs, status, words):
    response = client.post("/predict", **request_kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


@pytest.mark.parametrize("endpoint", ["/predict/batch", "/activations"])
def test_other_endpoints_refuse_alike(client, endpoint):
    response = client.post(endpoint, json={"pixels": [[0] * 28] * 28} if endpoint ==
                           "/activations" else {"images": [{"pixels": [[0] * 28] * 28}]})
    assert response.status_code == 422
    assert "no ink" in response.json()["error"]


@pytest.mark.parametrize(("doc", "words"), [
    ({"image": "x"}, "needs \"images\""),
    ({"images": []}, "no image"),
    ({"images": ["x"]}, "images[0]: must be an object"),
    ({"images": [{"pixels": digit_pixels()}] * 65}, "limit is 64"),
])
def test_batch_refusals(client, doc, words):
    response = client.post("/predict/batch", json=doc)
    assert 400 <= response.status_code < 500
    assert words in response.json()["error"]


def test_small_limits(service):
    client = TestClient(create_app(service, Limits(max_body_bytes=1000, max_side=64)))
    big = client.post("/predict", files={"file": ("a.png", drawn_digit("1", size=100))})
    assert big.status_code == 413 and "100x100" in big.json()["error"]

    def chunks():  # no Content-Length: the cap must hold while the bytes stream in
        for _ in range(10):
            yield b"x" * 500

    streamed = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
    assert streamed.status_code == 413 and "limit of 1,000 bytes" in streamed.json()["error"]


def test_unknown_routes_and_methods_are_json(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and "error" in wrong.json()


async def call_middleware(limits: Limits, headers, messages) -> list[dict]:
    """Drive BodyLimitMiddleware by hand with a given sequence of receive() messages."""
    sent, reached = [], []

    async def app(scope, receive, send):
        reached.append(await receive())

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that never sends the rest

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": headers}
    await BodyLimitMiddleware(app, limits)(scope, receive, send)
    return sent + reached


def test_slow_body_times_out():
    limits = Limits(body_timeout_s=0.05)
    first = {"type": "http.request", "body": b"abc", "more_body": True}
    sent = asyncio.run(call_middleware(limits, [], [first]))
    assert sent[0]["status"] == 408
    assert b"not received within" in sent[1]["body"]


def test_bad_content_length_and_disconnect():
    sent = asyncio.run(call_middleware(Limits(), [(b"content-length", b"lots")], []))
    assert sent[0]["status"] == 400
    gone = asyncio.run(call_middleware(Limits(), [], [{"type": "http.disconnect"}]))
    assert gone == []  # nothing sent, the app never called
    whole = asyncio.run(call_middleware(Limits(), [], [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False}]))
    assert whole == [{"type": "http.request", "body": b"abcd", "more_body": False}]


# ---- the command -------------------------------------------------------------------------


def test_serve_command_errors_are_one_line(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: ") and "missing.pt" in err and len(
        err.splitlines()) == 1
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


def test_serve_command_refuses_a_taken_port(run_dir, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
    assert "cannot listen" in capsys.readouterr().err


# ---- not a digit, whole numbers, a NumPy run ------------------------------------------------


def number_png(width: int = 600, height: int = 200, dark_on_light: bool = True) -> bytes:
    """Two strokes far apart - a "1" and a "7" - on one picture."""
    image = Image.new("L", (width, height), 255 if dark_on_light else 0)
    pen = ImageDraw.Draw(image)
    ink = 0 if dark_on_light else 255
    sx, sy = width / 600, height / 200
    pen.line([(150 * sx, 30 * sy), (150 * sx, 170 * sy)], fill=ink, width=int(14 * sy))
    pen.line([(380 * sx, 40 * sy), (480 * sx, 40 * sy), (420 * sx, 170 * sy)], fill=ink,
             width=int(14 * sy))
    return encode(image)


def test_single_answers_say_is_digit(client):
    one = client.post("/predict", content=drawn_digit("1"),
                      headers={"content-type": "image/png"}).json()
    assert isinstance(one["is_digit"], bool)
    batch = client.post("/predict/batch", json={"images": [{"pixels": digit_pixels()}]}).json()
    assert isinstance(batch["predictions"][0]["is_digit"], bool)
    maps = client.post("/activations", json={"pixels": digit_pixels()}).json()
    assert isinstance(maps["prediction"]["is_digit"], bool)


def test_a_tap_is_not_a_digit(client):
    """A single dot on the canvas: the preprocessing says so, whatever the model thinks."""
    image = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(image).ellipse([130, 130, 150, 150], fill=255)
    body = client.post("/predict", content=encode(image),
                       headers={"content-type": "image/png"}).json()
    assert body["is_digit"] is False and body["reason"]
    maps = client.post("/activations", content=encode(image),
                       headers={"content-type": "image/png"}).json()
    assert maps["prediction"]["is_digit"] is False


def test_model_info_describes_the_gate(client):
    gate = client.get("/model").json()["digit_gate"]
    assert gate["calibrated"] is False and "fallback" in gate["description"]


@pytest.mark.parametrize("size", [(600, 200), (3000, 1000)])
def test_number_reads_digits_with_boxes(client, size):
    response = client.post("/predict?number=true", content=number_png(*size),
                           headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    digits = body["digits"]
    assert len(digits) == 2 and body["text"] == "".join(d["class"] for d in digits)
    sx = size[0] / 600
    (x1, y1, w1, h1), (x2, _, w2, _) = digits[0]["box"], digits[1]["box"]
    # Boxes in the picture's own pixels, also when the server reduced a large picture.
    assert abs(x1 + w1 / 2 - 150 * sx) < 15 * sx and abs(y1 + h1 / 2 - 100 * sx) < 15 * sx
    assert 360 * sx < x2 < 400 * sx and 90 * sx < w2 < 130 * sx
    for d in digits:
        assert set(d) >= {"label", "class", "probability", "box", "is_digit", "input"}
        assert np.array(d["input"]).shape == (28, 28)


@pytest.mark.parametrize(("url", "kwargs", "status", "words"), [
    ("/predict?number=true", {"json": {"pixels": digit_pixels()}}, 400, "needs a picture"),
    ("/predict?number=perhaps", {"json": {"pixels": digit_pixels()}}, 400, "true or false"),
    ("/predict/batch?number=true", {"json": {"images": []}}, 400, "/predict"),
    ("/predict?number=true", {"content": encode(Image.new("L", (300, 100), 255)),
                              "headers": {"content-type": "image/png"}}, 422, "no ink"),
])
def test_number_refusals(client, url, kwargs, status, words):
    response = client.post(url, **kwargs)
    assert response.status_code == status and words in response.json()["error"]


def test_serves_a_numpy_backend_run(tmp_path):
    """A run of the NumPy network (.npz checkpoint) serves like any other (issue 12)."""
    from conftest import load_synthetic, write_dataset
    from mnistlab.train import resolve_config, train

    data = load_synthetic(write_dataset(tmp_path / "data"))
    config = resolve_config(model="mlp", backend="numpy", epochs=1, val_size=100,
                            runs_dir=str(tmp_path / "runs"), name="numpy",
                            model_args={"hidden": "32"})
    run = train(config, data=data, stream=io.StringIO()).run_dir
    assert any(run.glob("*.npz"))
    client = TestClient(create_app(DigitModel.load(run, torch.device("cpu"))))
    info = client.get("/model").json()
    assert info["name"] == "mlp" and info["run"] == "numpy"
    body = client.post("/predict", json={"pixels": digit_pixels()}).json()
    assert len(body["probabilities"]) == 10 and isinstance(body["is_digit"], bool)
    assert client.post("/activations", json={"pixels": digit_pixels()}).json()["layers"] == []


@pytest.mark.parametrize(("threshold", "is_digit"), [(1e9, False), (-1e9, True)])
def test_the_checkpoints_calibrated_gate_decides(tmp_path, threshold, is_digit):
    run = make_run(tmp_path / "gated")
    state = torch.load(run / "best.pt", weights_only=True)
    state["digit_gate"] = {"score": "energy", "threshold": threshold, "calibrated": True,
                           "val_accept": 0.995}
    torch.save(state, run / "best.pt")
    client = TestClient(create_app(DigitModel.load(run, torch.device("cpu"))))
    assert client.get("/model").json()["digit_gate"]["calibrated"] is True
    body = client.post("/predict", json={"pixels": digit_pixels()}).json()
    assert body["is_digit"] is is_digit
    assert ("reason" in body) is not is_digit
    maps = client.post("/activations", json={"pixels": digit_pixels()}).json()
    assert maps["prediction"]["is_digit"] is is_digit
