"""End to end in headless Chromium: draw a "1" and a "7" on the page with mouse strokes (and a
"1" with a finger), against a real uvicorn server and a model trained on real MNIST, and read
back what the network answers.

Skips without real MNIST, Playwright or Debian's chromium - except in CI
(MNISTLAB_REQUIRE_REAL_DATA set), where any of those missing is a failure. Screenshots go to
pytest's temporary folder, and also to $MNISTLAB_SCREENSHOTS when that is set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
IDLE = ("document.body.dataset.state === 'idle' && "
        "document.getElementById('prediction').dataset.label !== undefined")

# Strokes in canvas coordinates (fractions of its side), the way a person draws them.
ONE = [[(0.52, 0.18), (0.50, 0.50), (0.48, 0.84)]]
SEVEN = [[(0.26, 0.22), (0.74, 0.22)], [(0.74, 0.22), (0.58, 0.52), (0.44, 0.86)]]


def required(reason: str):
    if os.environ.get("MNISTLAB_REQUIRE_REAL_DATA"):
        pytest.fail(f"{reason} (required: MNISTLAB_REQUIRE_REAL_DATA is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        required("playwright is not installed")
    if not Path(CHROMIUM).exists():
        required(f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def mnist_run(real_mnist, tmp_path_factory):
    """LeNet-5 trained for one epoch on real MNIST (98% test accuracy; a few seconds)."""
    from mnistlab.train import resolve_config, train

    runs = tmp_path_factory.mktemp("runs")
    result = train(resolve_config(model="lenet5", epochs=1, val_size=1000, runs_dir=str(runs),
                                  name="lenet5", bf16="off"), data=real_mnist)
    assert result.summary["test_accuracy"] > 0.95
    return result.run_dir


@pytest.fixture(scope="module")
def server(mnist_run):
    pytest.importorskip("uvicorn")
    from mnistlab.serve.background import running_server

    with running_server(mnist_run) as url:
        yield url


@pytest.fixture
def page(browser, server):
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's
    # Content-Security-Policy (rightly) forbids to the page's own scripts.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True,
                                  has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    page.wait_for_function("document.getElementById('model-info').textContent.includes('lenet5')")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


def answer(page) -> int:
    page.wait_for_function(IDLE, timeout=15_000)
    return int(page.locator("#prediction").get_attribute("data-label"))


def save_screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("MNISTLAB_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def bars(page) -> list[float]:
    return [float(li.inner_text().split("\n")[-1].strip().rstrip("%"))
            for li in page.locator("#bars li").all()]


@pytest.mark.slow
@pytest.mark.real_data  # mnist_run trains on real MNIST
def test_draw_one_and_seven(page, tmp_path):
    draw(page, ONE)
    assert answer(page) == 1
    assert page.locator("#prediction").inner_text() == "1"
    assert page.locator("#bars li.top .label").inner_text() == "1"
    assert max(bars(page)) == bars(page)[1]
    # The 28x28 input and feature maps of two conv layers are on the page.
    assert page.locator("#layers figure").count() == 2
    assert page.locator("#input").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, 28, 28).data.some(v => v > 0 && v < 255)")
    save_screenshot(page, tmp_path / "draw-1.png")

    page.click("#clear")
    assert page.locator("#prediction").inner_text() == "?"
    draw(page, SEVEN)
    assert answer(page) == 7
    save_screenshot(page, tmp_path / "draw.png")


@pytest.mark.slow
@pytest.mark.real_data  # mnist_run trains on real MNIST
def test_bars_update_while_drawing(page):
    """Requests go out during a stroke (throttled), not only when the pen lifts."""
    box = page.locator("#pad").bounding_box()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/activations" in r.url else None)
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.15 * box["height"])
    page.mouse.down()
    for i in range(1, 41):
        page.mouse.move(box["x"] + 0.5 * box["width"],
                        box["y"] + (0.15 + 0.0175 * i) * box["height"])
        page.wait_for_timeout(20)
    during = len(requests)
    page.mouse.up()
    assert answer(page) == 1
    assert during >= 2, f"only {during} requests while drawing"
    assert len(requests) < 41  # throttled: far fewer requests than pointer moves


@pytest.mark.slow
@pytest.mark.real_data  # mnist_run trains on real MNIST
def test_draw_with_touch(page):
    """Pointer events cover fingers too: a touch stroke through the DevTools protocol."""
    box = page.locator("#pad").bounding_box()
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, y: float | None) -> None:
        points = [] if y is None else [{"x": box["x"] + 0.5 * box["width"],
                                        "y": box["y"] + y * box["height"]}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", 0.18)
    for i in range(1, 25):
        touch("touchMove", 0.18 + i * 0.0275)
    touch("touchEnd", None)
    assert answer(page) == 1
