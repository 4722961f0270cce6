"""A small version of benchmarks/load_test.py against a real uvicorn server on 127.0.0.1:
200 requests from 8 client threads, every one answered 200 with a prediction."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import serve_extras  # noqa: F401 - skips this module (fails in CI) without the serve extra
from mnistlab.serve.background import running_server
from test_serve import make_run

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "load_test.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("load_test", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_test"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_load_200_requests_without_errors(tmp_path):
    bench = load_benchmark()
    run = make_run(tmp_path / "run")
    payloads = [bench.synthetic_png(k) for k in range(20)]
    with running_server(run) as url:
        report = bench.run_load(url, payloads, [None] * len(payloads), requests=200,
                                concurrency=8, source="synthetic")
        activations = bench.run_load(url, payloads[:4], [None] * 4, requests=16,
                                     concurrency=4, endpoint="/activations")
    assert report.errors == []
    assert len(report.latencies_ms) == 200
    summary = report.summary()
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["requests_per_s"] > 0
    assert "200/200 requests" in report.describe()
    assert activations.errors == [] and len(activations.latencies_ms) == 16


def test_load_test_reports_errors(tmp_path):
    bench = load_benchmark()
    with running_server(make_run(tmp_path / "run")) as url:
        # A blank canvas is refused (422): the load test must count that as an error.
        blank = bench.canvas_png(np.zeros((28, 28), dtype=np.uint8))
        report = bench.run_load(url, [blank], [None], requests=5, concurrency=2)
    assert len(report.errors) == 5 and "HTTP 422" in report.errors[0]


def test_running_server_reports_a_failed_start(tmp_path):
    from mnistlab.errors import MnistlabError

    with pytest.raises(MnistlabError, match="exited with status 2"), \
            running_server(tmp_path / "missing.pt"):
        pass


def test_load_test_refuses_options_it_would_ignore(capsys):
    bench = load_benchmark()
    for argv, message in [
        (["--preprocess", "--requests", "10", "--threads", "1,2"],
         "--requests, --threads: not used with --preprocess"),
        (["runs/x", "--rounds", "3"], "--rounds: only used with --preprocess"),
        (["--preprocess", "--rounds", "0"], "--rounds must be at least 1"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            bench.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
