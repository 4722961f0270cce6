"""`RUN/report.html`: everything about one run in one self-contained page.

Pictures are inlined as base64 PNGs and the styling is inline CSS: the file opens anywhere,
offline, with no JavaScript, and can be mailed or attached as it is. Sections that need the
model or the test images (model summary, mistakes, feature maps) say why when they cannot be
made, rather than failing the whole report.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from mnistlab.atomic import write_text
from mnistlab.errors import MnistlabError
from mnistlab.text import plural
from mnistlab.viz.curves import RunRecord, curves_figure, load_run
from mnistlab.viz.style import figure_bytes, percent

PX_PER_INCH = 96  # CSS pixels: every picture is shown at the scale it was drawn at
PNG_DPI = 144  # 1.5x: sharp on high-density screens, small enough to inline
FEATURE_CHANNELS = 16  # channels per layer in the report's feature maps
MISTAKES_SHOWN = 24

CSS = """
:root { --ink: #1d2430; --muted: #5b6573; --line: #e3e6ea; --accent: #1f77b4;
        --good: #2ca02c; --bad: #d62728; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.45 "DejaVu Sans", -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
             sans-serif; }
main { max-width: 1060px; margin: 0 auto; padding: 28px 24px 40px; }
header h1 { font-size: 26px; margin: 0 0 4px; }
header p { margin: 0; color: var(--muted); }
section { background: white; border: 1px solid var(--line); border-radius: 8px;
          padding: 18px 20px; margin: 18px 0; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 0 0 8px; }
.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
.tiles { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px;
         background: none; border: none; padding: 0; }
.tile { background: white; border: 1px solid var(--line); border-radius: 8px;
        padding: 12px 14px; }
.tile .value { font-size: 24px; font-weight: bold; }
.tile .label { color: var(--muted); font-size: 13px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: normal; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; border-bottom: none; }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
pre { background: var(--bg); padding: 10px; border-radius: 6px; overflow-x: auto; }
figure { margin: 0; overflow-x: auto; }
img { display: block; max-width: 100%; height: auto; }
.bar { background: var(--line); height: 10px; border-radius: 5px; width: 160px; }
.bar span { display: block; height: 10px; border-radius: 5px; background: var(--bad); }
details summary { cursor: pointer; color: var(--accent); margin-top: 10px; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
"""


def write_report(run_dir: str | os.PathLike[str], data=None,
                 device: torch.device | str = "cpu") -> Path:
    """Write `run_dir/report.html` and return its path. `data` (a DigitData) is the test set
    to show mistakes and feature maps on; by default the run's own data set is looked up
    (never downloaded)."""
    run = load_run(run_dir)
    path = run.path / "report.html"
    html_text = render_report(run, data, device)
    try:
        write_text(path, html_text)
    except OSError as e:  # e.g. a read-only run folder
        raise MnistlabError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def render_report(run: RunRecord, data=None, device: torch.device | str = "cpu") -> str:
    model, normalizer, state, why_no_model = _load_model(run, device)
    test, why_no_data = (None, "no model to evaluate") if model is None else _test_set(run, data)
    s = run.summary
    classes = tuple((state or {}).get("classes") or (data.classes if data else ())
                    or [str(i) for i in range(10)])
    parts = [_header(run), _tiles(run)]
    parts.append(_section("Training curves", _img(curves_figure([run]), "training curves")))
    parts.append(f'<div class="two">{_config(run)}{_model_table(model, why_no_model)}</div>')
    confusion = (s.get("test") or {}).get("confusion_matrix")
    mistakes = None
    if test is not None:
        from mnistlab.checkpoint import evaluation_bf16
        from mnistlab.data.pipeline import Split
        from mnistlab.viz.mistakes import find_mistakes

        bf16 = evaluation_bf16(state or {}, torch.device(device))
        mistakes = find_mistakes(model, Split(*test), normalizer, device,
                                 num_classes=len(classes), bf16=bf16)
        confusion = mistakes.confusion.tolist()  # the same evaluation as the mistakes shown
    parts.append(_per_class(confusion, classes))
    if confusion is not None:
        from mnistlab.viz.mistakes import confusion_figure

        parts.append(_section("Confusion matrix", _img(
            confusion_figure(torch.tensor(confusion), classes), "confusion matrix"),
            "Rows are the true class, columns the prediction; colour is the share of the row "
            "(on a power scale, so that single errors show), green the right answers."))
    if mistakes is not None:
        from mnistlab.viz.mistakes import mistakes_figure

        parts.append(_section("Most confident mistakes", _img(
            mistakes_figure(test[0], mistakes, classes, MISTAKES_SHOWN), "mistakes"),
            "Test images the model gets wrong, the most confident first: true → predicted "
            "(probability of the prediction)."))
        parts.append(_feature_maps(model, normalizer, test, classes))
    else:
        parts.append(_section("Mistakes and feature maps",
                              f'<p class="note">Not shown: {html.escape(why_no_data or "")}.</p>'))
    parts.append(_footer(run))
    body = "\n".join(parts)
    title = html.escape(f"mnistlab report: {run.name}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
            f"</main>\n</body>\n</html>\n")


# ---- loading ---------------------------------------------------------------------------
def _load_model(run: RunRecord, device):
    from mnistlab.checkpoint import load_model

    try:
        model, normalizer, state = load_model(run.path, device)
    except MnistlabError as e:
        return None, None, None, str(e)
    return model, normalizer, state, None


def _test_set(run: RunRecord, data):
    """(images, labels) of the run's test set, or (None, why not)."""
    if data is None:
        from mnistlab.data.dataset import load_dataset

        try:
            data = load_dataset(run.config.get("dataset", "mnist"), run.config.get("data_dir"),
                                download=False)
        except MnistlabError as e:
            return None, f"the test images were not found ({str(e).splitlines()[0]})"
        trained_on = run.config.get("data_md5")
        if trained_on and data.md5s() != trained_on:
            return None, (f"the {data.name} files found here are not the ones this run was "
                          "trained on (their MD5s differ from config.json's data_md5)")
    return (data.test_images, data.test_labels), None


# ---- pieces ----------------------------------------------------------------------------
def _img(fig, alt: str) -> str:
    width = round(fig.get_figwidth() * PX_PER_INCH)
    data = base64.b64encode(figure_bytes(fig, "png", PNG_DPI)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" '
            f'alt="{html.escape(alt)}"></figure>')


def _section(title: str, content: str, note: str | None = None) -> str:
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f"<section>\n<h2>{html.escape(title)}</h2>\n{content}\n{note_html}\n</section>"


def _header(run: RunRecord) -> str:
    c, s = run.config, run.summary
    bits = [f"model <b>{html.escape(run.model)}</b>",
            f"data set <b>{html.escape(str(s.get('dataset') or c.get('dataset', '?')))}</b>",
            html.escape(plural(s.get("epochs_run", len(run.epochs)), "epoch", fmt="")),
            f"device {html.escape(str(s.get('device') or c.get('device', '?')))}"]
    if not s:
        bits.append("<b>training not finished (no summary.json yet)</b>")
    return (f"<header>\n<h1>{html.escape(run.name)}</h1>\n<p>{' · '.join(bits)} · "
            f"<code>{html.escape(str(run.path))}</code></p>\n</header>")


def _tiles(run: RunRecord) -> str:
    s = run.summary
    best = run.best_epoch
    validated = run.validated or not best
    tiles = [(percent(s.get("test_accuracy")), "test accuracy"),
             (percent(s.get("best_val_accuracy")),
              "best validation accuracy" + (f" (epoch {best})" if best else ""))
             if validated else (f"epoch {best}", "kept (no validation split)"),
             (f"{s['parameters']:,}" if s.get("parameters") else "–", "parameters"),
             (f"{s['train_seconds']:,.1f} s" if s.get("train_seconds") is not None else "–",
              "training time"),
             (f"{s['images_per_s']:,.0f}" if s.get("images_per_s") else "–",
              "training images / s")]
    cells = "".join(f'<div class="tile"><div class="value">{html.escape(v)}</div>'
                    f'<div class="label">{html.escape(label)}</div></div>' for v, label in tiles)
    return f'<section class="tiles">{cells}</section>'


CONFIG_KEYS = ["dataset", "model", "model_args", "epochs", "batch_size", "optimizer", "lr",
               "momentum", "nesterov", "weight_decay", "schedule", "label_smoothing", "augment",
               "elastic", "val_size", "seed", "device", "bf16", "recipe"]


def _config(run: RunRecord) -> str:
    c = run.config
    if not c:
        return _section("Configuration", '<p class="note">No config.json in this run.</p>')
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_value(c[k]))}</td></tr>"
                   for k in CONFIG_KEYS if k in c)
    resolved = c.get("resolved") or {}
    if resolved:
        rows += "".join(f"<tr><th>{html.escape(k)} (resolved)</th>"
                        f"<td>{html.escape(_value(resolved[k]))}</td></tr>"
                        for k in ("device", "bf16", "threads", "train_size", "steps_per_epoch")
                        if k in resolved)
    full = html.escape(json.dumps(c, indent=2, default=str))
    return _section("Configuration", f"<table>{rows}</table>\n<details><summary>full "
                                     f"config.json</summary><pre>{full}</pre></details>")


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items()) or "–"
    return "–" if v is None else str(v)


def _model_table(model, why_not: str | None) -> str:
    if model is None:
        return _section("Model", f'<p class="note">No model: {html.escape(why_not or "")}</p>')
    from mnistlab.models import describe
    from mnistlab.models.summary import count_params

    layers = describe(model)
    rows = "".join(
        f"<tr><td>{html.escape(layer.name)}</td><td>{html.escape(layer.kind)}</td>"
        f"<td>{'×'.join(map(str, layer.output_shape))}</td><td class='num'>{layer.params:,}</td>"
        f"<td class='num'>{layer.macs:,}</td></tr>" for layer in layers)
    total = (f"<tr class='total'><td colspan='3'>total</td><td class='num'>"
             f"{count_params(model):,}</td><td class='num'>"
             f"{sum(x.macs for x in layers):,}</td></tr>")
    head = ("<tr><th>layer</th><th>type</th><th>output</th><th class='num'>params</th>"
            "<th class='num'>MACs</th></tr>")
    return _section(f"Model: {type(model).__name__}", f"<table>{head}{rows}{total}</table>",
                    "Output shapes are per image; MACs are multiply-accumulates per image.")


def _per_class(confusion: list[list[int]] | None, classes: tuple[str, ...]) -> str:
    if confusion is None:
        return _section("Per-class accuracy", '<p class="note">No test results yet.</p>')
    m = torch.tensor(confusion)
    support, right = m.sum(1), m.diag()
    errors = support - right
    worst = max(int(errors.max()), 1)
    rows = "".join(
        f"<tr><td>{html.escape(classes[i] if i < len(classes) else str(i))}</td>"
        f"<td class='num'>{percent(float(right[i]) / max(int(support[i]), 1))}</td>"
        f"<td class='num'>{int(right[i]):,} / {int(support[i]):,}</td>"
        f"<td class='num'>{int(errors[i]):,}</td>"
        f"<td><div class='bar'><span style='width:{100 * int(errors[i]) / worst:.1f}%'>"
        f"</span></div></td></tr>" for i in range(len(m)))
    head = ("<tr><th>class</th><th class='num'>accuracy</th><th class='num'>right / total</th>"
            "<th class='num'>errors</th><th>errors, relative to the worst class</th></tr>")
    return _section("Per-class accuracy (test)", f"<table>{head}{rows}</table>")


def _feature_maps(model, normalizer, test, classes) -> str:
    from mnistlab.viz.featuremaps import feature_map_figure

    images, labels = test
    index = 0
    fig = feature_map_figure(model, images[index], normalizer, classes, int(labels[index]),
                             max_channels=FEATURE_CHANNELS,
                             title=f"test image {index} through {type(model).__name__}")
    return _section(f"Feature maps of test image {index}", _img(fig, "feature maps"),
                    f"The first {FEATURE_CHANNELS} channels of every convolution, activation "
                    "and pooling layer, one colour scale per layer. All of them: "
                    f"mnistlab featuremaps RUN --index {index} --max-channels 512")


def _footer(run: RunRecord) -> str:
    env = run.config.get("environment") or {}
    bits = [f"{k} {v}" for k, v in env.items() if k in ("mnistlab", "torch", "python", "platform")]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"<footer>Trained with {html.escape(', '.join(bits) or 'unknown versions')}. "
            f"Report written {stamp} by <code>mnistlab report</code>.</footer>")
