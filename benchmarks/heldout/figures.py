"""From what a reader answered on each picture to the figures and tables of realworld.py.

Pure bookkeeping (no model, no pictures), so the tables can be tested with made-up answers:

    records (one per picture and run) -> figures(records) per seed -> summarise over seeds
    -> side_by_side / family_table / lofo_table (markdown)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .sets import DIGIT_FAMILIES, NON_DIGIT_FAMILIES

DEV, HELD = "development", "held-out"
DEV_NON_DIGITS = ("letter", "shape", "scribble", "tap")  # benchmarks/devset.py's kinds
DEV_DIGITS = ("printed", "handwritten")
MNIST_28 = "mnist-28x28"  # MNIST images as they are: validation (dev), test (held-out)
NEGATIVES = "negatives-holdout"  # mnistlab's generated variant="holdout" non-digits, 28x28

# Which held-out families are closest to each training negative kind, for leave-one-out.
CLOSEST = {
    "letter": ("latin", "greek", "cyrillic"),
    "scribble": ("pen-symbol",),
    "zigzag": ("check", "pen-symbol"),
    "shape": ("outline-rect", "spiral", "arrow", "face"),
    "blob": ("fashion", "face"),
    "dots": ("texture",),
    "noise": ("texture",),
    "bars": ("texture", "outline-rect"),
    "strokes": ("pen-symbol", "check", "arrow"),
}


@dataclass(frozen=True)
class Record:
    """One picture read by one run."""

    split: str  # DEV or HELD
    family: str  # a held-out family, a devset kind, MNIST_28 or NEGATIVES(-kind)
    group: str  # "digit", "number" or "non-digit"
    condition: str
    text: str  # the truth: digits shown, "" for a non-digit
    read: str  # what was read: a digit, a number, "" when nothing
    accepted: bool  # single: said "digit"; number: every digit passed the gate
    reads_as: str = ""  # a non-digit that truly reads as this digit: not in the rejection figure


# measure -> (families on the development side, families on the held-out side, what counts)
ROWS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "non-digits rejected": (DEV_NON_DIGITS, NON_DIGIT_FAMILIES, "rejected"),
    "generated non-digits (28x28, variant holdout) rejected": ((NEGATIVES,), (), "rejected"),
    "digit photos accepted": (DEV_DIGITS, DIGIT_FAMILIES, "accepted"),
    "MNIST digits as they are (28x28) accepted": ((MNIST_28,), (MNIST_28,), "accepted"),
    "handwritten digits, not MNIST (optdigits), read right": ((), ("optdigits",), "right"),
    "MNIST digits photographed, read right": (("handwritten",), ("mnist-test-photo",), "right"),
    "printed digits read right": (("printed",), ("printed",), "right"),
    "handwritten numbers read exactly": (("number-handwritten",), ("number-optdigits",),
                                         "right"),
    "handwritten numbers read exactly, every digit accepted": (
        ("number-handwritten",), ("number-optdigits",), "right+accepted"),
    "printed numbers read exactly": (("number-printed",), ("number-printed",), "right"),
    "printed numbers read exactly, every digit accepted": (
        ("number-printed",), ("number-printed",), "right+accepted"),
}
# The figures tests pin (tests/test_heldout_figures.py, pinned.json): held-out side only.
PINNED = ("non-digits rejected", "digit photos accepted",
          "MNIST digits as they are (28x28) accepted",
          "handwritten digits, not MNIST (optdigits), read right",
          "MNIST digits photographed, read right", "printed digits read right",
          "handwritten numbers read exactly", "printed numbers read exactly")

Count = tuple[int, int]  # hits, total


def hit(record: Record, what: str) -> bool:
    if what == "rejected":
        return not record.accepted
    if what == "accepted":
        return record.accepted
    right = record.read == record.text
    return right and record.accepted if what == "right+accepted" else right


def count(records: Iterable[Record], what: str) -> Count:
    hits = total = 0
    for r in records:
        if what == "rejected" and r.reads_as:
            continue  # reads as a digit: reported apart, not a rejection failure
        hits += hit(r, what)
        total += 1
    return hits, total


def figures(records: Sequence[Record]) -> dict[str, dict[str, Count]]:
    """{split: {measure: (hits, total)}} for one seed's records of one run: the ROWS, then
    per family ("rejected: latin", "accepted: optdigits", "read right: optdigits", ...)."""
    out: dict[str, dict[str, Count]] = {DEV: {}, HELD: {}}
    by: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        family = NEGATIVES if r.family.startswith(NEGATIVES) else r.family
        by.setdefault((r.split, family), []).append(r)
        if family != r.family:
            by.setdefault((r.split, r.family), []).append(r)
    for measure, (dev, held, what) in ROWS.items():
        for split, families in ((DEV, dev), (HELD, held)):
            chosen = [r for f in families for r in by.get((split, f), [])]
            if chosen:
                out[split][measure] = count(chosen, what)
    for split in (DEV, HELD):  # by condition: single pictures (the 28x28 ones have none)
        for r_condition in sorted({r.condition for r in records if r.split == split}):
            if r_condition == "28x28":
                continue
            rs = [r for r in records if r.split == split and r.condition == r_condition
                  and r.group != "number"]
            digits = [r for r in rs if r.group == "digit"]
            others = [r for r in rs if r.group == "non-digit"]
            if digits:
                out[split][f"accepted @ {r_condition}"] = count(digits, "accepted")
                out[split][f"read right @ {r_condition}"] = count(digits, "right")
            if others and count(others, "rejected")[1]:
                out[split][f"rejected @ {r_condition}"] = count(others, "rejected")
    for (split, family), rs in sorted(by.items()):
        group = rs[0].group
        if group == "non-digit":
            out[split][f"rejected: {family}"] = count(rs, "rejected")
            like = [r for r in rs if r.reads_as]
            if like:
                out[split][f"reads as a digit, read as it: {family}"] = (
                    sum(r.accepted and r.read == r.reads_as for r in like), len(like))
        elif family != MNIST_28:
            out[split][f"accepted: {family}"] = count(rs, "accepted")
            out[split][f"read right: {family}"] = count(rs, "right")
    return out


def rate(c: Count) -> float:
    return 100.0 * c[0] / c[1] if c[1] else float("nan")


def summarise(per_seed: Sequence[Mapping[str, Mapping[str, Count]]]
              ) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {measure: {"mean", "min", "n"}}}: rates in percent over the seeds (n: pictures
    per seed, on average)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in (DEV, HELD):
        names = sorted({m for f in per_seed for m in f.get(split, {})})
        out[split] = {}
        for m in names:
            counts = [f[split][m] for f in per_seed if m in f.get(split, {})]
            rates = [rate(c) for c in counts]
            out[split][m] = {"mean": sum(rates) / len(rates), "min": min(rates),
                             "n": sum(c[1] for c in counts) / len(counts), "seeds": len(rates)}
    return out


def cell(s: Mapping[str, float] | None) -> tuple[str, str]:
    if not s:
        return "-", "-"
    text = f"{s['mean']:.1f}%"
    if s["seeds"] > 1:
        text += f" (min {s['min']:.1f}%)"
    return text, f"{s['n']:.0f}"


def side_by_side(summary: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    lines = ["| measure | development | n | held-out | n |", "|---|---:|---:|---:|---:|"]
    for measure in ROWS:
        dev, held = summary[DEV].get(measure), summary[HELD].get(measure)
        if dev or held:
            lines.append(f"| {measure} | " + " | ".join([*cell(dev), *cell(held)]) + " |")
    return "\n".join(lines)


def family_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]], split: str) -> str:
    """Per family of one split: non-digits rejected; digits and numbers accepted, read right."""
    s = summary[split]
    lines = ["| family | rejected | accepted | read right | n |", "|---|---:|---:|---:|---:|"]
    families = sorted({m.split(": ", 1)[1] for m in s if ": " in m and " @ " not in m})
    for f in families:
        rejected, accepted, right = (s.get(f"{k}: {f}") for k in ("rejected", "accepted",
                                                                    "read right"))
        n = cell(rejected or accepted)[1]
        lines.append(f"| {f} | {cell(rejected)[0]} | {cell(accepted)[0]} | {cell(right)[0]} "
                     f"| {n} |")
    like = [m for m in s if m.startswith("reads as a digit")]
    for m in like:
        lines.append(f"| {m.split(': ', 1)[1]}: letters that read as a digit (left out of "
                     f"'rejected'), read as that digit | | {cell(s[m])[0]} | | "
                     f"{cell(s[m])[1]} |")
    return "\n".join(lines)


def condition_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]], split: str
                    ) -> str:
    """Per picture condition of one split: single digits accepted and read right, single
    non-digits rejected."""
    s = summary[split]
    lines = ["| condition | digits accepted | digits read right | n | non-digits rejected | n |",
             "|---|---:|---:|---:|---:|---:|"]
    for c in sorted({m.split(" @ ", 1)[1] for m in s if " @ " in m}):
        acc, right, rej = (s.get(f"{k} @ {c}") for k in ("accepted", "read right", "rejected"))
        lines.append(f"| {c} | {cell(acc)[0]} | {cell(right)[0]} | {cell(acc)[1]} | "
                     f"{cell(rej)[0]} | {cell(rej)[1]} |")
    return "\n".join(lines)


# ---- leave one family out --------------------------------------------------------------------

EXCLUDE_KEYS = ("exclude", "excluded", "negatives_exclude", "exclude_kinds")


def excluded_kinds(config: Mapping[str, Any]) -> list[str]:
    """The training negative kinds a run left out, read from its config.json: any EXCLUDE_KEYS
    entry under "not_a_digit" (at any depth, e.g. not_a_digit.negatives.exclude) or at the
    top level, as a list or a comma-separated string."""
    found: list[str] = []

    def take(value: Any) -> None:
        if isinstance(value, str):
            found.extend(v.strip() for v in value.split(",") if v.strip())
        elif isinstance(value, (list, tuple)):
            for v in value:
                take(v)

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if k in EXCLUDE_KEYS:
                    take(v)
                else:
                    walk(v)

    walk(config.get("not_a_digit", {}))
    for key in EXCLUDE_KEYS:
        take(config.get(key))
    return sorted(dict.fromkeys(found))


def run_excludes(run: Path) -> list[str]:
    path = Path(run) / "config.json"
    if not path.is_file():
        return []
    try:
        return excluded_kinds(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def lofo_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, kind it left out): its rejection of that kind's development negatives
    and of the closest held-out families, next to the same figures of a run that left nothing
    out (the first such run; None when there is none). `results` items have "run",
    "excluded" and "summary" (summarise's output)."""
    base = next((r for r in results if not r["excluded"]), None)

    def figures_of(result: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
        if result is None:
            return {}
        dev = result["summary"][DEV].get(f"rejected: {NEGATIVES}-{kind}")
        held = {f: result["summary"][HELD].get(f"rejected: {f}") for f in CLOSEST.get(kind, ())}
        return {"dev": dev, "held": held}

    rows = []
    for result in results:
        for kind in result["excluded"]:
            rows.append({"kind": kind, "run": str(result["run"]),
                         "left_out": figures_of(result, kind),
                         "all_families": figures_of(base, kind),
                         "baseline_run": str(base["run"]) if base else None})
    return rows


def lofo_table(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| left out of training | development: generated holdout negatives of that kind, "
             "rejected (all kinds trained) | held-out, closest families, rejected (all kinds "
             "trained) |", "|---|---:|---|"]
    for row in rows:
        lo, base = row["left_out"], row["all_families"]
        dev = f"{cell(lo.get('dev'))[0]} ({cell(base.get('dev'))[0]})"
        held = ", ".join(f"{f} {cell(s)[0]} ({cell(base.get('held', {}).get(f))[0]})"
                         for f, s in lo.get("held", {}).items())
        lines.append(f"| {row['kind']} | {dev} | {held} |")
    return "\n".join(lines)


def combine(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Results of several invocations (e.g. one seed each, run in parallel; read back from
    their --json files) merged per run: the seeds' figures pooled and summarised again."""
    merged: dict[str, dict[str, Any]] = {}
    for r in results:
        per_seed = [{split: {m: (int(c[0]), int(c[1])) for m, c in f.items()}
                     for split, f in seed.items()} for seed in r["per_seed"]]
        if r["run"] not in merged:
            merged[r["run"]] = {**r, "per_seed": [], "seeds": []}
        merged[r["run"]]["per_seed"] += per_seed
        merged[r["run"]]["seeds"] += list(r["seeds"])
    for m in merged.values():
        m["summary"] = summarise(m["per_seed"])
    return list(merged.values())


def records_to_json(records: Sequence[Record]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
