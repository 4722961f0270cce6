"""A bounded attack on `mnistlab serve` on 127.0.0.1: replays issue 20's items 1-6 and prints
each figure (statuses and times), then stops the server.

    python benchmarks/attack.py [RUN] [--json]

Starts its own server on a free loopback port (mnistlab.serve.background.running_server) for
RUN, or, without one, for a run it trains first (`mnistlab train --threads 1`, one epoch, in
a temporary folder; it needs MNIST where `mnistlab data` finds it). Every loop is bounded in
count, every request in time, and nothing is sent anywhere but 127.0.0.1.

1. a 96 KB JSON string that never closes, with /healthz asked meanwhile;
2. four whole-number requests of ~1,000 dots each at once, with an ordinary /predict meanwhile;
3. a two-pixel dash in whole-number mode (HTTP and `mnistlab predict --number`);
4. `serve` on a run whose summary.json is damaged three ways;
5. `serve` on checkpoints that lie (3 class names for 10 outputs; NaN weights);
6. 256 connections that send headers and no body, then newcomers; and one address opening
   more connections than its share.

Client and server share the machine's cores, so the times are upper bounds of what the
server alone would take; the targets (issue 20) are printed beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mnistlab.errors import MnistlabError
from mnistlab.serve.background import running_server
from mnistlab.serve.limits import SECURITY_HEADERS

HOST = "127.0.0.1"
TIMEOUT_S = 60.0  # any one request
MALFORMED = b'{"image": "' + b'"\\' * 48000  # 96 KB


def send(port: int, method: str = "GET", path: str = "/healthz", body: bytes | None = None,
         content_type: str | None = None, timeout: float = TIMEOUT_S) -> dict:
    """One request on a fresh connection: status, seconds, whether the security headers came,
    and the JSON error if any (status 0: no answer within `timeout`)."""
    start = time.monotonic()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    headers = {"content-type": content_type} if content_type else {}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        names = {k.lower() for k, _ in response.getheaders()}
        error = None
        if response.status >= 400:
            try:
                error = json.loads(data).get("error")
            except ValueError:
                error = data[:80].decode("latin-1")
        return {"status": response.status, "s": round(time.monotonic() - start, 3),
                "security_headers": set(SECURITY_HEADERS) <= names, "error": error,
                "bytes": len(data)}
    except (OSError, http.client.HTTPException) as e:
        return {"status": 0, "s": round(time.monotonic() - start, 3), "error": str(e)[:80]}
    finally:
        connection.close()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def dots_png(count: int = 1000, side: int = 1024, seed: int = 0) -> bytes:
    image = Image.new("L", (side, side), 255)
    pixels = image.load()
    rng = np.random.default_rng(seed)
    cells = int(np.ceil(np.sqrt(count)))
    step = side // cells
    for k in range(count):
        x = (k % cells) * step + int(rng.integers(0, max(1, step - 2)))
        y = (k // cells) * step + int(rng.integers(0, max(1, step - 5)))
        for dy in range(4):
            pixels[x, min(side - 1, y + dy)] = 0
    return png(image)


def dash_png() -> bytes:
    image = Image.new("L", (28, 28), 255)
    image.putpixel((10, 14), 0)
    image.putpixel((11, 14), 0)
    return png(image)


def digit_png() -> bytes:
    image = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(image).line([(140, 40), (140, 240)], fill=255, width=22)
    return png(image)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def while_busy(port: int, attack, probe, probes: int = 100) -> tuple[list, list]:
    """Run `attack()` in threads while asking `probe()` every 0.1 s (at most `probes` times)."""
    results: list = []
    done = threading.Event()

    def run_attack() -> None:
        results.extend(attack())
        done.set()

    thread = threading.Thread(target=run_attack)
    thread.start()
    time.sleep(0.2)
    seen = []
    for _ in range(probes):
        seen.append(probe())
        if done.wait(0.1):
            break
    thread.join(TIMEOUT_S * 2)
    return results, seen


# ---- the items ---------------------------------------------------------------------------------


def item1_malformed_json(port: int) -> dict:
    attack, health = while_busy(
        port, lambda: [send(port, "POST", "/predict", MALFORMED, "application/json")],
        lambda: send(port, timeout=10))
    return {"attack": attack[0], "healthz_max_s": max(h["s"] for h in health),
            "healthz_statuses": sorted({h["status"] for h in health}),
            "target": "4xx in <= 2 s; /healthz <= 1 s"}


def item2_number_of_dots(port: int) -> dict:
    dots = dots_png()

    def four():
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda _: send(port, "POST", "/predict?number=true", dots,
                                                "image/png"), range(4)))

    attack, ordinary = while_busy(port, four, lambda: send(port, "POST", "/predict",
                                                           digit_png(), "image/png"), probes=5)
    return {"png_bytes": len(dots), "numbers": attack, "ordinary_predict_max_s":
            max(o["s"] for o in ordinary), "ordinary_statuses":
            sorted({o["status"] for o in ordinary}),
            "target": "numbers 2xx/4xx in <= 5 s; an ordinary /predict meanwhile <= 3 s"}


def item3_dash(port: int, run: Path, folder: Path) -> dict:
    http_answer = send(port, "POST", "/predict?number=true", dash_png(), "image/png")
    path = folder / "dash.png"
    path.write_bytes(dash_png())
    cli = subprocess.run([sys.executable, "-m", "mnistlab", "predict", str(run), str(path),
                          "--number"], capture_output=True, text=True, timeout=120)
    return {"http": http_answer, "cli_exit": cli.returncode,
            "cli_traceback": "Traceback" in cli.stdout + cli.stderr,
            "cli_output": (cli.stdout + cli.stderr).strip().splitlines()[-1:],
            "target": "no 500, security headers on every answer, no traceback"}


DAMAGED = {"invalid UTF-8": b'{"test_accuracy": 0.99, "x": "\xff"}',
           "100,000 nested brackets": b"[" * 100_000 + b"]" * 100_000,
           '"test_accuracy": "99%"': b'{"test_accuracy": "99%"}'}


def copy_run(run: Path, folder: Path) -> Path:
    target = folder / run.name
    target.mkdir(parents=True)
    for name in ("best.pt", "best.npz", "config.json"):
        if (run / name).exists():
            shutil.copy(run / name, target / name)
    return target


def item4_damaged_summary(run: Path, folder: Path) -> dict:
    out = {}
    for i, (what, content) in enumerate(DAMAGED.items()):
        copy = copy_run(run, folder / f"summary{i}")
        (copy / "summary.json").write_bytes(content)
        start = time.monotonic()
        try:
            with running_server(copy, startup_s=60) as url:
                model = send(port_of(url), path="/model")
                accuracy = None
                if model["status"] == 200:
                    conn = http.client.HTTPConnection(HOST, port_of(url), timeout=10)
                    conn.request("GET", "/model")
                    accuracy = json.loads(conn.getresponse().read())["test_accuracy"]
                    conn.close()
                out[what] = {"started": True, "start_s": round(time.monotonic() - start, 2),
                             "model_status": model["status"], "test_accuracy": accuracy}
        except Exception as e:  # a failed start is the figure here
            out[what] = {"started": False, "error": str(e)[-200:]}
    out["target"] = "serve anyway; test_accuracy unknown (null)"
    return out


def item5_lying_checkpoints(run: Path, folder: Path) -> dict:
    from mnistlab.checkpoint import save_checkpoint

    state = torch.load(sorted(run.glob("best.pt"))[0], weights_only=True)
    out = {}
    for what, change in (("3 class names for 10 outputs", "classes"), ("NaN weights", "nan")):
        lying = dict(state)
        if change == "classes":
            lying["classes"] = ["0", "1", "2"]
        else:
            lying["state_dict"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point()
                                   else v for k, v in state["state_dict"].items()}
        path = folder / f"lying-{change}.pt"
        save_checkpoint(path, lying)
        start = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-m", "mnistlab", "serve", str(path),
                                   "--port", "0"], capture_output=True, text=True, timeout=60)
            out[what] = {"exit": done.returncode, "s": round(time.monotonic() - start, 2),
                         "lines": len(done.stderr.strip().splitlines()),
                         "message": done.stderr.strip()[-160:]}
        except subprocess.TimeoutExpired:
            out[what] = {"exit": None, "message": "still serving after 60 s (not refused)"}
    out["target"] = "exit 2, one line"
    return out


def item6_slow_bodies(run: Path) -> dict:
    out = {}
    with running_server(run, extra_args=("--body-timeout", "10")) as url:
        port = port_of(url)
        held = []
        try:
            for _ in range(256):
                s = socket.create_connection((HOST, port), timeout=10)
                s.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\ncontent-type: "
                          b"image/png\r\ncontent-length: 100000\r\n\r\n")
                held.append(s)
            time.sleep(0.5)
            newcomers = [send(port, timeout=15) for _ in range(10)]
            out["256 body-less connections, then 10 newcomers"] = {
                "statuses": sorted({n["status"] for n in newcomers}),
                "max_s": max(n["s"] for n in newcomers)}
        finally:
            for s in held:
                s.close()
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(running_server(
                run, extra_args=("--max-client-connections", "16")))
        except MnistlabError as e:  # a server without the option (an earlier version)
            out["40 idle connections from one address, share 16"] = {"error": str(e)[-120:]}
            return out
        port = port_of(url)
        held = []
        try:
            for _ in range(40):
                held.append(socket.create_connection((HOST, port), timeout=10))
            time.sleep(0.5)
            closed = 0
            for s in held:
                s.settimeout(0.05)
                with contextlib.suppress(TimeoutError, ConnectionResetError):
                    closed += s.recv(1) == b""
            answer = send(port, timeout=15)
            out["40 idle connections from one address, share 16"] = {
                "closed_by_server": closed, "newcomer": answer["status"],
                "newcomer_s": answer["s"]}
        finally:
            for s in held:
                s.close()
    out["target"] = "newcomers answered; one address holds at most its share"
    return out


# ---- the run to attack ---------------------------------------------------------------------------


def train_tiny_run(folder: Path) -> Path:
    print("attack: no RUN given: training one (mnistlab train --threads 1, one epoch)",
          flush=True)
    subprocess.run([sys.executable, "-m", "mnistlab", "train", "--threads", "1", "--runs-dir",
                    str(folder), "--name", "attack"], check=True, timeout=900,
                   stdout=subprocess.DEVNULL)
    return folder / "attack"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", help="run folder or checkpoint to serve (default: "
                                               "train a one-epoch run first)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    from benchmark_common import machine

    results: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="mnistlab-attack-") as tmp:
        folder = Path(tmp)
        run = Path(args.run) if args.run else train_tiny_run(folder / "runs")
        if run.is_file():
            run = run.parent
        with running_server(run, extra_args=("--body-timeout", "10")) as url:
            port = port_of(url)
            results["1 malformed JSON string"] = item1_malformed_json(port)
            results["2 whole numbers of 1,000 dots"] = item2_number_of_dots(port)
            results["3 two-pixel dash"] = item3_dash(port, run, folder)
        results["4 damaged summary.json"] = item4_damaged_summary(run, folder)
        results["5 checkpoints that lie"] = item5_lying_checkpoints(run, folder)
        results["6 slow bodies"] = item6_slow_bodies(run)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for item, figures in results.items():
            print(f"{item}:")
            for key, value in figures.items():
                print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
