"""The HTML report: self-contained, complete, and rendered by a real browser without errors.

The browser check opens a copy of the report in headless Chromium with a small probe
script added (the report itself has no JavaScript) and reads the probe's findings back
from `--dump-dom`: how many images there are, which did not load, and any error or
console.error raised while the page loaded.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from conftest import load_synthetic, missing, write_dataset
from mnistlab.cli import main
from mnistlab.errors import MnistlabError
from mnistlab.viz.report import write_report


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_synthetic(write_dataset(tmp_path_factory.mktemp("digits"), n_train=400))


@pytest.fixture(scope="module")
def weak_run(data, tmp_path_factory) -> Path:
    """An MLP trained too briefly to be right about everything: the report has mistakes."""
    from mnistlab.train import resolve_config, train

    config = resolve_config(model="mlp", model_args={"hidden": "16"}, epochs=2, lr=0.003,
                            val_size=100, batch_size=32, log_interval=2, bf16="off",
                            device="cpu", runs_dir=str(tmp_path_factory.mktemp("runs")),
                            name="weak")
    return train(config, data=data, stream=io.StringIO()).run_dir


@pytest.fixture(scope="module")
def report(weak_run, data) -> Path:
    return write_report(weak_run, data=data)


IMG = re.compile(r'<img src="([^"]*)"[^>]*alt="([^"]*)"')


def test_report_is_one_self_contained_file(report, weak_run):
    assert report == weak_run / "report.html"
    text = report.read_text()
    assert "<script" not in text.lower()  # no JavaScript needed
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing from the network
    assert "@import" not in text and "url(" not in text
    images = IMG.findall(text)
    assert [alt for _, alt in images] == ["training curves", "confusion matrix", "mistakes",
                                          "feature maps"]
    for src, alt in images:
        assert src.startswith("data:image/png;base64,"), alt
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
            width, height = image.size
        assert 800 <= width <= 2000 and 300 <= height <= 8000, (alt, image.size)


def test_report_has_every_section(report, weak_run):
    text = report.read_text()
    for heading in ("Training curves", "Configuration", "Model: MLP", "Per-class accuracy",
                    "Confusion matrix", "Most confident mistakes", "Feature maps of test image"):
        assert f"<h2>{heading}" in text, heading
    summary = json.loads((weak_run / "summary.json").read_text())
    assert f"{100 * summary['test_accuracy']:.2f}%" in text
    assert f"{summary['parameters']:,}" in text
    assert text.count("<tr><td>layers.") == 3  # Linear, ReLU, Linear of the model summary
    per_class = text.split("Per-class accuracy")[1].split("</table>")[0]
    assert per_class.count("<div class='bar'>") == 10


def test_report_without_test_images_says_why(weak_run, tmp_path, monkeypatch):
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    run = tmp_path / "copy"
    shutil.copytree(weak_run, run)
    text = write_report(run).read_text()  # its data set (synthetic) cannot be found by name
    assert "Mistakes and feature maps" in text and "Not shown:" in text
    assert "Confusion matrix" in text  # from summary.json, which needs no images
    (run / "best.pt").unlink()
    (run / "last.pt").unlink()
    text = write_report(run).read_text()
    assert "No model:" in text and "Training curves" in text


def test_report_of_a_run_without_validation_says_what_it_kept(data, tmp_path):
    from mnistlab.train import resolve_config, train

    config = resolve_config(model="mlp", model_args={"hidden": "16"}, epochs=2, val_size=0,
                            batch_size=32, bf16="off", device="cpu", runs_dir=str(tmp_path),
                            name="all")
    run = train(config, data=data, stream=io.StringIO()).run_dir
    text = write_report(run, data=data).read_text()
    assert "kept (no validation split)" in text and "best validation accuracy" not in text


def test_report_of_what_is_not_a_run(tmp_path, capsys):
    with pytest.raises(MnistlabError, match=r"no metrics\.csv"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: ") and err.count("\n") == 1


# ---- in a browser ----------------------------------------------------------------------
PROBE_HEAD = """<script>
window.__problems = [];
window.addEventListener("error", e => window.__problems.push(
  "error: " + (e.message || (e.target && (e.target.alt || e.target.tagName)))), true);
const consoleError = console.error;
console.error = (...a) => {
  window.__problems.push("console: " + a.join(" "));
  consoleError(...a);
};
</script>"""
PROBE_BODY = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    problems: window.__problems,
    width: document.documentElement.scrollWidth});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    missing("Chromium is not installed (Debian: apt-get install chromium)")


def render_in_browser(page: Path, tmp_path: Path) -> tuple[dict, str]:
    text = page.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</head>", PROBE_HEAD + "</head>", 1)
                      .replace("</body>", PROBE_BODY + "</body>", 1))
    profile = tmp_path / "chromium-profile"
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               "--window-size=1100,900", "--virtual-time-budget=10000", "--dump-dom",
               probed.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the page did not finish loading:\n{done.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1))), done.stderr


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (Chromium logs every level as INFO:CONSOLE): the
    report has no scripts and the probe writes nothing, so any message is a problem."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_report_renders_in_chromium_with_every_image(report, tmp_path):
    result, stderr = render_in_browser(report, tmp_path)
    assert result["images"] == 4
    assert result["broken"] == []
    assert result["problems"] == []
    assert console_messages(stderr) == []
    assert result["width"] <= 1100  # no horizontal scrolling at a laptop's width


def test_the_browser_check_sees_a_broken_image(report, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(report.read_text().replace(
        "data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    broken.write_text(broken.read_text().replace(
        "</body>", '<img src="data:," alt="empty" onerror="console.error(1)"></body>'))
    result, stderr = render_in_browser(broken, tmp_path)
    assert result["broken"] == ["training curves", "empty"]
    assert sorted(result["problems"]) == ["console: 1", "error: empty", "error: training curves"]
    assert len(console_messages(stderr)) == 1


def test_train_report_flag_writes_the_report(data, tmp_path, monkeypatch, capsys):
    import mnistlab.data.dataset
    import mnistlab.train.loop

    monkeypatch.setattr(mnistlab.data.dataset, "load_dataset", lambda *a, **k: data)
    monkeypatch.setattr(mnistlab.train.loop, "load_dataset", lambda *a, **k: data)
    argv = ["train", "--model", "mlp", "--hidden", "16", "--epochs", "1", "--val-size", "100",
            "--bf16", "off", "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "r",
            "--report"]
    try:
        import tensorboard  # noqa: F401
        argv.append("--tensorboard")
    except ImportError:
        pass
    assert main(argv) == 0
    assert f"wrote {tmp_path / 'r' / 'report.html'}" in capsys.readouterr().out
    text = (tmp_path / "r" / "report.html").read_text()
    assert text.count("<img ") == 4  # its own test set was found: mistakes and feature maps
    if "--tensorboard" in argv:
        assert any((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
@pytest.mark.real_data
def test_report_of_a_real_mnist_run_renders(real_default_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(real_default_run, run)  # the shared run must not be modified
    page = write_report(run)
    text = page.read_text()
    assert text.count("<img ") == 4 and "Not shown" not in text
    summary = json.loads((run / "summary.json").read_text())
    assert f"{100 * summary['test_accuracy']:.2f}%" in text
    result, stderr = render_in_browser(page, tmp_path)
    assert (result["images"], result["broken"], result["problems"]) == (4, [], [])
    assert console_messages(stderr) == []
