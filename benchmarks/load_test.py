"""A bounded load test of `mnistlab serve` on 127.0.0.1: latency percentiles and throughput.

    flock /tmp/mnistlab-cpu.lock python benchmarks/load_test.py runs/NAME \
        --requests 2000 --concurrency 8
    # serving threads, side by side, quiet and while a training-like job loads every core:
    flock /tmp/mnistlab-timing.lock python benchmarks/load_test.py runs/NAME \
        --threads 1,2 --contention --requests 300 --concurrency 1

    # where the time of one request goes: the preprocessing alone, in this process
    flock /tmp/mnistlab-timing.lock python benchmarks/load_test.py --preprocess

Starts the server in a child process (or uses --url), sends PNG drawings of digits - real
MNIST test digits blown up to a 280x280 canvas when MNISTLAB_DATA has them, else synthetic
strokes - from `concurrency` client threads with keep-alive connections, and fails (exit 1)
on any error or wrong status. Client and server share the machine's cores, so the figures are
a floor for what the server alone could do.

`--preprocess` starts no server: it times, in this process and side by side (interleaved
picture by picture, so that a change in the machine's load hits all alike), the ways of
bringing the same PNGs into MNIST form: `prepare` as the server calls it (clean canvases take
the fast path) and `prepare(fast=False)` (the full photo path), and prints the median
milliseconds per picture of each.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import httpx
import numpy as np
from PIL import Image, ImageDraw


@dataclass
class LoadReport:
    url: str
    endpoint: str
    requests: int
    concurrency: int
    payloads: str
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list)
    correct: int = 0
    labelled: int = 0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("latencies_ms", "errors")}
        out.update(ok=len(self.latencies_ms), errors=len(self.errors),
                   first_errors=self.errors[:5], requests_per_s=round(self.requests_per_s, 1),
                   p50_ms=round(self.percentile(50), 2), p90_ms=round(self.percentile(90), 2),
                   p99_ms=round(self.percentile(99), 2),
                   max_ms=round(max(self.latencies_ms, default=float("nan")), 2),
                   accuracy=round(self.correct / self.labelled, 4) if self.labelled else None)
        return out

    def describe(self) -> str:
        s = self.summary()
        accuracy = (f"; answers right on {s['accuracy']:.1%} of labelled drawings"
                    if s["accuracy"] is not None else "")
        return (f"{s['ok']:,}/{self.requests:,} requests to {self.endpoint} at concurrency "
                f"{self.concurrency} in {self.seconds:.1f} s: {s['requests_per_s']:.1f} req/s, "
                f"latency p50 {s['p50_ms']:.1f} ms, p90 {s['p90_ms']:.1f} ms, "
                f"p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms; {s['errors']} errors"
                f"{accuracy} ({self.payloads})")


def canvas_png(digit: np.ndarray, side: int = 280) -> bytes:
    """A 28x28 digit as a browser canvas would send it: white ink on black, 280x280 PNG."""
    image = Image.fromarray(digit, "L").resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_png(k: int, side: int = 280) -> bytes:
    image = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(image)
    x = 60 + (k * 37) % 160
    pen.line([(x, 40), (x + (k % 3) * 20, 240)], fill=255, width=22)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_payloads(n: int = 200) -> tuple[list[bytes], list[int | None], str]:
    """`n` distinct PNGs, with their true labels where known."""
    try:
        from mnistlab.data.dataset import load_dataset

        data = load_dataset("mnist", download=False)
        digits, labels = data.test_images[:n].numpy(), data.test_labels[:n].tolist()
        return [canvas_png(d) for d in digits], labels, f"{n} MNIST test digits as 280x280 PNGs"
    except Exception:  # no data here: the server's speed does not depend on what is drawn
        return [synthetic_png(k) for k in range(n)], [None] * n, f"{n} synthetic 280x280 PNGs"


def run_load(url: str, payloads: list[bytes], labels: list[int | None], *, requests: int,
             concurrency: int, endpoint: str = "/predict", source: str = "",
             timeout_s: float = 30.0) -> LoadReport:
    report = LoadReport(url, endpoint, requests, concurrency, source)
    lock = threading.Lock()
    local = threading.local()

    def one(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:  # one keep-alive connection per client thread
            client = local.client = httpx.Client(base_url=url, timeout=timeout_s)
        k = i % len(payloads)
        start = time.perf_counter()
        try:
            response = client.post(endpoint, content=payloads[k],
                                   headers={"content-type": "image/png"})
            elapsed = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            body = response.json()
            label = body["prediction" if endpoint == "/activations" else "label"]
            label = label["label"] if isinstance(label, dict) else label
        except Exception as e:
            with lock:
                report.errors.append(f"request {i}: {type(e).__name__}: {e}")
            return
        with lock:
            report.latencies_ms.append(elapsed)
            if labels[k] is not None:
                report.labelled += 1
                report.correct += int(label == labels[k])

    # Warm up (first-call allocations, lazy imports) outside the measurement.
    with httpx.Client(base_url=url, timeout=timeout_s) as warm:
        for payload in payloads[:5]:
            warm.post(endpoint, content=payload, headers={"content-type": "image/png"})
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    report.seconds = time.perf_counter() - start
    return report


def time_preprocessing(payloads: list[bytes], rounds: int = 5,
                       extra: dict[str, Callable[[Image.Image], object]] | None = None) -> dict:
    """Median ms per picture of each way to preprocess `payloads` (decoded beforehand, as
    the server does before it calls `prepare`), measured side by side; `extra` adds ways to
    time alongside (an earlier version of the module, say)."""
    from mnistlab.predict.preprocess import prepare

    def decoded(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    ways: dict[str, Callable[[Image.Image], object]] = {
        "fast path (prepare)": prepare,
        "full path (prepare, fast=False)": lambda image: prepare(image, fast=False),
        **(extra or {}),
    }
    images = [decoded(data) for data in payloads]
    times: dict[str, list[float]] = {name: [] for name in ["decode", *ways]}
    for image in images[:5]:  # warm up: first-call allocations, lazy imports
        for way in ways.values():
            way(image)
    for _ in range(rounds):
        for data, image in zip(payloads, images, strict=True):
            start = time.perf_counter()
            decoded(data)
            times["decode"].append((time.perf_counter() - start) * 1000)
            for name, way in ways.items():
                start = time.perf_counter()
                way(image)
                times[name].append((time.perf_counter() - start) * 1000)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    return {"pictures": len(images), "rounds": rounds,
            "took_fast_path": sum(prepare(image).clean for image in images),
            "median_ms": {name: round(m, 3) for name, m in medians.items()},
            "full_over_fast": round(medians["full path (prepare, fast=False)"]
                                    / medians["fast path (prepare)"], 2)}


# A training-like job: conv forward and backward passes on every core (PyTorch's default
# threads), as when `mnistlab train` runs on the same machine as the server.
CONTENDER = """
import torch
from torch import nn
net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
                    nn.Flatten(), nn.Linear(64 * 24 * 24, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
while True:
    opt.zero_grad(); nn.functional.cross_entropy(net(x), y).backward(); opt.step()
"""


@contextlib.contextmanager
def contention(on: bool):
    """A training-like job in a child process for as long as the block lasts (if `on`)."""
    if not on:
        yield
        return
    job = subprocess.Popen([sys.executable, "-c", CONTENDER])
    try:
        time.sleep(3)  # let it start and load the cores
        yield
    finally:
        job.terminate()
        job.wait()


def compare_threads(checkpoint: str, threads: list[int], with_contention: bool,
                    device: str, **kwargs) -> list[dict]:
    """The same load against one server per thread count, quiet and (optionally) contended."""
    from mnistlab.serve.background import running_server

    rows = []
    for n in threads:
        with running_server(checkpoint, device=device, extra_args=("--threads", str(n))) as url:
            for contended in ([False, True] if with_contention else [False]):
                with contention(contended):
                    report = run_load(url, **kwargs)
                rows.append({"threads": n, "contention": contended, **report.summary()})
                print(f"threads {n}, {'under contention' if contended else 'quiet'}: "
                      f"{report.describe()}", file=sys.stderr, flush=True)
    return rows


SERVER_OPTIONS = ("requests", "concurrency", "endpoint", "device", "threads", "contention")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("checkpoint", nargs="?", help="checkpoint or run folder to serve")
    where.add_argument("--url", help="load an already running server instead")
    where.add_argument("--preprocess", action="store_true",
                       help="time the preprocessing in this process instead (no server)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="with --preprocess: passes over the pictures (default 5)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--endpoint", choices=["/predict", "/activations"], default="/predict")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", help="compare serving threads, e.g. 1,2 (one server each)")
    parser.add_argument("--contention", action="store_true",
                        help="with --threads: also measure while a training-like job runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")

    if args.preprocess:  # no server: its options would be ignored
        serving = [f"--{name}" for name in SERVER_OPTIONS
                   if getattr(args, name) != parser.get_default(name)]
        if serving:
            parser.error(f"{', '.join(serving)}: not used with --preprocess (no server runs)")
        args.rounds = 5 if args.rounds is None else args.rounds
    elif args.rounds is not None:
        parser.error("--rounds: only used with --preprocess")
    if args.preprocess and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    payloads, labels, source = make_payloads()
    if args.preprocess:
        result = time_preprocessing(payloads, args.rounds)
        if args.json:
            print(json.dumps({"payloads": source, **result}, indent=2))
        else:
            print(f"{source}, {args.rounds} rounds, interleaved; {result['took_fast_path']}/"
                  f"{result['pictures']} took the fast path; median ms per picture:")
            for name, ms in result["median_ms"].items():
                print(f"  {name:36s} {ms:7.3f}")
            print(f"full path / fast path: {result['full_over_fast']:.2f}x")
        return 0
    kwargs = dict(requests=args.requests, concurrency=args.concurrency, endpoint=args.endpoint,
                  source=source)
    if args.threads:
        if args.url:
            parser.error("--threads starts its own servers; it cannot be used with --url")
        try:
            threads = [int(t) for t in args.threads.split(",")]
        except ValueError:
            parser.error(f"--threads: expected numbers such as 1,2, got {args.threads!r}")
        rows = compare_threads(args.checkpoint, threads, args.contention, args.device,
                               payloads=payloads, labels=labels, **kwargs)
        if args.json:
            print(json.dumps(rows, indent=2))
        return 1 if any(row["errors"] for row in rows) else 0
    if args.url:
        report = run_load(args.url, payloads, labels, **kwargs)
    else:
        from mnistlab.errors import MnistlabError
        from mnistlab.serve.background import running_server

        try:
            with running_server(args.checkpoint, device=args.device) as url:
                report = run_load(url, payloads, labels, **kwargs)
        except MnistlabError as e:
            print(f"load_test: error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(report.summary(), indent=2) if args.json else report.describe())
    for error in report.errors[:5]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if report.errors or len(report.latencies_ms) != args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
