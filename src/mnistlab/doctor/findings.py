"""What the doctor hands back: findings (name, severity, evidence, why, fix) and the report.

A finding carries its evidence as numbers in a dict, so that the text report, `--json` and
tests read the same values. The report also keeps the measurements the doctor looked at,
so that a healthy model is shown healthy with numbers, not just declared so.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "note")


@dataclass
class Finding:
    name: str  # stable identifier, e.g. "softmax-before-cross-entropy"
    severity: str  # error | warning | note
    title: str  # one line: what is wrong
    evidence: dict[str, Any]  # the numbers that show it
    explanation: str  # why it matters
    fix: str  # what to change, usually a code snippet

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity, "title": self.title,
                "evidence": self.evidence, "explanation": self.explanation, "fix": self.fix}


@dataclass
class Report:
    subject: str  # the model and setup examined, in one line
    findings: list[Finding] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.sort()

    def sort(self) -> None:
        self.findings.sort(key=lambda f: SEVERITIES.index(f.severity))

    def add(self, *findings: Finding) -> None:
        self.findings.extend(findings)
        self.sort()

    def by_severity(self, severity: str) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    @property
    def errors(self) -> list[Finding]:
        return self.by_severity("error")

    @property
    def warnings(self) -> list[Finding]:
        return self.by_severity("warning")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.findings]

    def get(self, name: str) -> Finding | None:
        return next((f for f in self.findings if f.name == name), None)

    @property
    def healthy(self) -> bool:
        """No error and no warning (notes are advice, not problems)."""
        return not self.errors and not self.warnings

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({
            "subject": self.subject, "healthy": self.healthy, "exit_code": self.exit_code,
            "counts": {s: len(self.by_severity(s)) for s in SEVERITIES},
            "findings": [f.to_dict() for f in self.findings],
            "measurements": self.measurements, "seconds": self.seconds})

    def format(self, width: int = 100) -> str:
        out = [f"mnistlab doctor: {self.subject}", ""]
        shown_after, shown_fix = "", ""  # several init findings share one experiment and fix
        for f in self.findings:
            out.append(f"{f.severity.upper()}  {f.name}: {f.title}")
            plain = {k: v for k, v in f.evidence.items() if k not in BEFORE_AFTER}
            out.append(_wrap("evidence: " + format_evidence(plain), width))
            after = format_before_after(f.evidence)
            if after:
                out.append(_wrap("after re-initialising a copy: "
                                 + (after if after != shown_after else "as above"), width))
                shown_after = after
            out.append(_wrap("why: " + f.explanation, width))
            if f.fix == shown_fix:
                out.append("  fix: as above")
            else:
                out.append("  fix:")
                out.extend("      " + line for line in f.fix.strip("\n").splitlines())
            shown_fix = f.fix
            out.append("")
        out.extend(format_measurements(self.measurements))
        counts = ", ".join(_plural(len(self.by_severity(s)), s) for s in SEVERITIES)
        verdict = ("healthy: nothing wrong found" if not self.findings else
                   "healthy: no error or warning" if self.healthy else
                   "fix the errors first" if self.errors else "worth fixing")
        out += ["", f"{counts} ({verdict}); {self.seconds:.1f} s"]
        return "\n".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _wrap(text: str, width: int) -> str:
    return textwrap.fill(text, width=width, initial_indent="  ", subsequent_indent="    ",
                         break_on_hyphens=False)


def fmt(value: Any) -> str:
    """Numbers to four significant digits; everything else as it is."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


BEFORE_AFTER = ("before", "after_reinit", "short_training")


def format_before_after(evidence: dict[str, Any]) -> str:
    """`initial loss 5064 -> 2.45; ...; 20 steps at lr 0.01: loss 5064 -> 163 as it is,
    2.45 -> 1.23 re-initialised`."""
    after, before = evidence.get("after_reinit") or {}, evidence.get("before") or {}
    parts = []
    for key in ("initial_loss", "logits_std", "max_layer_out_std", "max_dead_fraction",
                "max_saturated_fraction", "grad_to_weight_spread"):
        if after.get(key) is not None and before.get(key) is not None and (after[key]
                                                                            or before[key]):
            parts.append(f"{key.replace('_', ' ')} {fmt(before[key])} -> {fmt(after[key])}")
    runs = evidence.get("short_training")
    if runs:
        (a0, a1), (r0, r1) = runs["as_is"], runs["reinitialised"]
        parts.append(f"{runs['steps']} steps at lr {fmt(runs['lr'])}: loss {fmt(a0)} -> "
                     f"{fmt(a1)} as it is, {fmt(r0)} -> {fmt(r1)} re-initialised")
    return "; ".join(parts)


def format_evidence(evidence: dict[str, Any]) -> str:
    return "; ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in evidence.items())


def format_measurements(m: dict[str, Any]) -> list[str]:
    """The numbers behind the verdict: data, initial loss, per-layer table, LR probe."""
    if not m:
        return []
    out = ["What the doctor looked at"]
    out.extend(format_script(m.get("script"), m))
    if "data" in m:
        out.append(f"  data: {m['data']}")
    if "output" in m:
        o = m["output"]
        out.append(f"  output: {o['form']} ({o['shape']}); loss {m.get('loss', '?')}")
    if "initial_loss" in m:
        line = f"  initial loss {fmt(m['initial_loss'])}"
        if m.get("expected_initial_loss") is not None:
            line += f" (ln {m['classes']} = {fmt(m['expected_initial_loss'])} expected)"
        line += f"; logits std {fmt(m.get('logits_std'))}"
        out.append(line)
    layers = m.get("layers") or []
    if layers:
        header = ("layer", "fan-in", "in std", "out std", "dead in", "satur.", "grad norm",
                  "grad/weight")
        rows = [(r["layer"], fmt(r["fan_in"]), fmt(r["in_std"]), fmt(r["out_std"]),
                 f"{r['dead_fraction']:.0%}", f"{r['saturated_fraction']:.0%}",
                 fmt(r.get("grad_norm")), fmt(r.get("grad_to_weight"))) for r in layers]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            out.append("    " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(row, widths,
                                                                         strict=True))))
    lr = m.get("lr_probe")
    if lr:
        out.append(f"  learning-rate probe ({lr['optimizer']}, {lr['steps']} steps of "
                   f"{lr['batch_size']} images from the same start; loss on a fixed batch "
                   f"{fmt(lr['start_loss'])} ->):")
        out.append("    " + "  ".join(f"lr {fmt(p['lr'])}: {fmt(p['loss'])}"
                                      + (" (diverged)" if p["diverged"] else "")
                                      for p in lr["points"]))
        if lr.get("longer"):
            out.append(f"    plateau, so {lr['longer'][0]['steps']} steps: " + "  ".join(
                f"lr {fmt(p['lr'])}: {fmt(p['loss'])}" for p in lr["longer"]))
        if lr.get("confounded"):
            out.append("    (measured on the model with the errors above: fix them first, then "
                       "read the probe)")
        elif lr.get("suggested") is not None:
            yours = (f"{'assumed' if lr.get('assumed') else 'yours'}: {fmt(lr['lr'])}"
                     + (f", warming up from {fmt(lr['warmup_lr'])}" if lr.get("warmup_lr")
                        else ""))
            out.append(f"    suggested {suggestion_text(lr['suggested'], lr['points'])}, the "
                       f"fastest from a cold start ({yours})")
        else:
            out.append("    no rate lowered the loss by 2% within the probe's steps: too few "
                       "to judge (usual for deep nets without BatchNorm, which start on a "
                       "plateau)")
    if "updates" in m:
        u = m["updates"]
        out.append(f"  updates: {u['epochs']} epochs x ceil({u['train_size']:,} / "
                   f"{u['batch_size']:,}) = {u['total']:,} optimizer steps")
    return out


def format_script(s: dict[str, Any] | None, m: dict[str, Any]) -> list[str]:
    """The script run: how it ended, what it did, what stood in for missing libraries."""
    if not s:
        return []
    out = [f"  script: {s['ended']} after {s['optimizer_steps']:,} optimizer steps, "
           f"{s['backward_calls']:,} backward, {s['zero_grad_calls']:,} zero_grad; "
           f"{s['training_calls']:,} training calls (batch {fmt(s['batch_size'])}), "
           f"{s['evaluation_passes']} evaluation passes; {s['seconds']:.1f} s"]
    if s.get("error"):
        out.append(f"  script error: {s['error']}"
                   + (f" at {s['error_where']}" if s.get("error_where") else ""))
    if s.get("stand_ins"):
        out.append("  stand-ins used (the real library is not installed): "
                   + ", ".join(s["stand_ins"]))
    curve = m.get("loss_curve") or {}
    if curve.get("losses_seen"):
        out.append(f"  training loss: {fmt(curve.get('first'))} at the first step, "
                   f"{fmt(curve.get('last'))} at the last ({curve['losses_seen']} seen)")
    if s.get("evaluation_batches_cut"):
        out.append(f"  passes over a DataLoader cut short by the budget: "
                   f"{s['evaluation_batches_cut']}")
    return out


def suggestion_text(suggested: tuple[float, float] | list[float],
                    points: list[dict[str, Any]] | None = None) -> str:
    """`lr range 0.01 .. 0.1`, or for a single rate `lr 0.05 (the only rate within half of the
    best loss drop; 0.005 and 0.5 did worse)`: never a range from a number to itself."""
    lo, hi = suggested
    if lo != hi:
        return f"lr range {fmt(lo)} .. {fmt(hi)}"
    others = sorted({p["lr"] for p in points or [] if p["lr"] != lo})
    below = [r for r in others if r < lo][-1:]
    above = [r for r in others if r > lo][:1]
    worse = " and ".join(fmt(r) for r in below + above)
    return (f"lr {fmt(lo)} (the only rate tried within half of the best loss drop"
            + (f"; {worse} did worse)" if worse else ")"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return str(obj)
    return obj
