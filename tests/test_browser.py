"""End to end in headless Chromium: draw a "1" and a "7" on the page with mouse strokes (and a
"1" with a finger), a star, and the number "27" in whole-number mode, against a real uvicorn
server and the default model trained on real MNIST, and check what a person sees: the answer's
text, the top bar's rendered width, the boxes, the dimmed answer when the server is gone.

Skips without real MNIST, Playwright or Debian's chromium - except in CI
(MNISTLAB_REQUIRE_REAL_DATA set), where any of those missing is a failure. Screenshots go to
pytest's temporary folder, and also to $MNISTLAB_SCREENSHOTS when that is set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import missing, needs_modules

# Every test here needs a model trained on real MNIST (the session's default run).
pytestmark = [pytest.mark.slow, pytest.mark.real_data]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
IDLE = ("document.body.dataset.state === 'idle' && "
        "document.getElementById('prediction').dataset.answer !== undefined")

MODEL_SHOWN = "document.getElementById('model-info').textContent.includes('parameters')"

# Strokes in canvas coordinates (fractions of its width and height), as a person draws them.
ONE = [[(0.52, 0.18), (0.50, 0.50), (0.48, 0.84)]]
SEVEN = [[(0.26, 0.22), (0.74, 0.22)], [(0.74, 0.22), (0.58, 0.52), (0.44, 0.86)]]
STAR = [[(0.50, 0.10), (0.74, 0.86), (0.12, 0.38), (0.88, 0.38), (0.26, 0.86), (0.50, 0.10)]]
# "27" on the wide canvas of whole-number mode (three times as wide as high).
TWO_SEVEN = [
    [(0.30, 0.30), (0.33, 0.18), (0.39, 0.15), (0.45, 0.20), (0.45, 0.34), (0.39, 0.52),
     (0.30, 0.82), (0.47, 0.82)],
    [(0.55, 0.18), (0.70, 0.18), (0.63, 0.50), (0.58, 0.84)],
]


def required(reason: str):
    missing(reason)  # skipped here, a failure in CI


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
def mnist_run(real_default_run):
    """The default recipe on real MNIST (shared by the session): the model people draw on."""
    return real_default_run


@pytest.fixture(scope="module")
def server(mnist_run):
    needs_modules("uvicorn", extra="serve")
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
    page.wait_for_function(MODEL_SHOWN)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def open_page(browser):
    """A page on a server of one's own (to stop it mid-test)."""
    contexts = []

    def opener(url: str):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        page.wait_for_function(MODEL_SHOWN)
        return page

    yield opener
    for context in contexts:
        context.close()


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


def answer(page) -> str:
    """The answer as a person reads it, once the page has it."""
    page.wait_for_function(IDLE, timeout=15_000)
    return page.locator("#prediction").inner_text()


def top_bar_fill(page) -> float:
    """The top bar's filled share, as rendered (its bounding box against its track's)."""
    page.wait_for_timeout(400)  # the width eases in over 0.18 s
    fill = page.locator("#bars li.top .fill").bounding_box()
    track = page.locator("#bars li.top .track").bounding_box()
    return fill["width"] / track["width"]


def save_screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("MNISTLAB_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def bars(page) -> list[float]:
    return [float(li.inner_text().split("\n")[-1].strip().rstrip("%"))
            for li in page.locator("#bars li").all()]


def test_draw_one_and_seven(page, tmp_path):
    draw(page, ONE)
    assert answer(page) == "1"
    assert page.locator("#bars li.top .label").inner_text() == "1"
    assert max(bars(page)) == bars(page)[1]
    # The bar is drawn as long as its probability says (it was an empty inline span).
    top = float(page.locator("#confidence").inner_text().rstrip("%")) / 100
    assert top_bar_fill(page) == pytest.approx(top, abs=0.03)
    assert top_bar_fill(page) > 0.5
    # The 28x28 input and feature maps of two conv layers are on the page.
    assert page.locator("#layers figure").count() == 2
    assert page.locator("#input").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, 28, 28).data.some(v => v > 0 && v < 255)")
    save_screenshot(page, tmp_path / "draw-1.png")

    page.click("#clear")
    assert page.locator("#prediction").inner_text() == "?"
    assert page.locator("#bars .fill").evaluate_all(
        "fills => fills.every(f => f.getBoundingClientRect().width === 0)")
    draw(page, SEVEN)
    assert answer(page) == "7"
    assert page.locator("#prediction").get_attribute("class") == "digit"  # big, not "reject"
    assert top_bar_fill(page) > 0.5
    save_screenshot(page, tmp_path / "draw.png")


def test_final_answer_is_sent_at_once(page):
    """After the pen lifts, the last drawing goes out as soon as the request before it is
    answered: encoded synchronously, never by canvas.toBlob, which waits for idle time (about
    a second in Chromium)."""
    page.evaluate("""() => {
      window.sentAt = []; window.doneAt = []; window.toBlobCalls = 0;
      const original = window.fetch;
      window.fetch = (...args) => {
        window.sentAt.push(performance.now());
        return original(...args).then((r) => { window.doneAt.push(performance.now()); return r; });
      };
      const toBlob = HTMLCanvasElement.prototype.toBlob;
      HTMLCanvasElement.prototype.toBlob = function (...args) {
        window.toBlobCalls += 1;
        return toBlob.apply(this, args);
      };
      document.getElementById('pad').addEventListener('pointerup',
        () => { window.liftedAt = performance.now(); });
    }""")
    draw(page, ONE)
    assert answer(page) == "1"
    assert page.evaluate("window.toBlobCalls") == 0
    # From the moment it could go (the pen up, and the previous answer in) to when it went.
    delay = page.evaluate("""() => {
      const last = window.sentAt[window.sentAt.length - 1];
      const ready = Math.max(window.liftedAt, ...window.doneAt.filter((t) => t <= last));
      return last - ready;
    }""")
    assert delay < 300, f"the last drawing went out {delay:.0f} ms after it could"


def test_a_star_is_not_a_digit(page, tmp_path):
    draw(page, STAR)
    assert answer(page) == "not a digit"
    guess = page.locator("#confidence").inner_text()
    assert guess.startswith("best guess ")
    # The best guess is small: the big confident number is gone.
    size = page.locator("#confidence").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert size < 20
    save_screenshot(page, tmp_path / "star.png")


def test_write_a_whole_number(page, tmp_path):
    page.click("#mode")
    box = page.locator("#pad").bounding_box()
    assert box["width"] > 2.5 * box["height"]  # the wide canvas
    draw(page, TWO_SEVEN)
    assert answer(page) == "27"
    chips = page.locator("#digits li")
    assert chips.count() == 2 and chips.nth(0).locator("b").inner_text() == "2"
    # The digits' boxes are drawn over the canvas, one round each stroke's ink.
    drawn = page.locator("#boxes").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".filter((v, i) => i % 4 === 3 && v > 0).length")
    assert drawn > 100
    assert page.locator("#inputs canvas").count() == 2
    save_screenshot(page, tmp_path / "number.png")


def shown_opacity(page, selector: str) -> float:
    """The opacity a person sees: the element's own times every ancestor's."""
    return page.locator(selector).first.evaluate(
        """e => {
          let o = 1;
          for (let n = e; n; n = n.parentElement) o *= parseFloat(getComputedStyle(n).opacity);
          return o;
        }""")


def test_server_gone_dims_the_answer(open_page, mnist_run, tmp_path):
    from mnistlab.serve.background import running_server

    with running_server(mnist_run) as url:
        page = open_page(url)
        draw(page, ONE)
        assert answer(page) == "1"
        for part in (".answer .verdict", "#input", "#layers figure img"):
            assert shown_opacity(page, part) == 1.0, part
    # The server is gone: draw on, and the old answer must not pass for the new one - nor
    # the old 28x28 input and feature maps (issue 20: they stayed bright).
    draw(page, SEVEN)
    page.wait_for_function("document.getElementById('status').textContent.includes("
                           "'not reachable')", timeout=15_000)
    assert page.locator("#prediction").inner_text() == "1"
    for part in (".answer .verdict", "#bars", "#input", "#layers figure img"):
        assert shown_opacity(page, part) < 0.5, f"{part} is not dimmed"
    assert "out of date" in page.locator("#status").inner_text()
    save_screenshot(page, tmp_path / "server-gone.png")


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
    assert answer(page) == "1"
    assert during >= 2, f"only {during} requests while drawing"
    assert len(requests) < 41  # throttled: far fewer requests than pointer moves


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
    assert answer(page) == "1"
