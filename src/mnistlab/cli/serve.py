"""`mnistlab serve`: the prediction API and the drawing page, on uvicorn."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import sys

from mnistlab.cli.common import add_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a model over HTTP, with a page to draw digits on",
        description="Serve a checkpoint: POST /predict, /predict/batch, /activations; "
                    "GET /model, /healthz; and a drawing page at /.")
    p.set_defaults(func=run)
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    limits = p.add_argument_group("limits (docs/serve.md explains each)")
    limits.add_argument("--max-body-mb", type=float, default=2.0, metavar="MB",
                        help="largest request body accepted (default: 2)")
    limits.add_argument("--max-side", type=int, default=4096, metavar="PX",
                        help="largest image width or height accepted (default: 4096)")
    limits.add_argument("--work-side", type=int, default=1024, metavar="PX",
                        help="larger images are reduced to this many pixels a side before "
                             "preprocessing (default: 1024)")
    limits.add_argument("--max-decodes", type=int, default=2, metavar="N",
                        help="images decoded and preprocessed at once (default: 2)")
    limits.add_argument("--header-timeout", type=float, default=5.0, metavar="S",
                        help="seconds a connection has to send a request's headers, from "
                             "opening or from its previous answer (default: 5)")
    limits.add_argument("--body-timeout", type=float, default=10.0, metavar="S",
                        help="seconds to receive a request's body after its headers "
                             "(default: 10)")
    limits.add_argument("--max-connections", type=int, default=256, metavar="N",
                        help="open connections; beyond it the longest-idle one is closed "
                             "(default: 256)")
    limits.add_argument("--max-client-connections", type=int, default=64, metavar="N",
                        help="open connections from one client address; beyond it that "
                             "client's longest-idle one is closed (default: 64)")
    limits.add_argument("--max-requests", type=int, default=64, metavar="N",
                        help="requests processed at once; beyond it a 503 (default: 64)")
    limits.add_argument("--number-budget", type=float, default=3.0, metavar="S",
                        help="seconds a whole number (?number=true) may wait for its slot, "
                             "and again to be read; beyond it a 503 or a 422 (default: 3)")
    limits.add_argument("--allowed-hosts", metavar="NAMES",
                        help="comma-separated Host header names accepted, '*' for any "
                             "(default: localhost,127.0.0.1,[::1] when bound to a loopback "
                             "address, else any)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="PyTorch threads for a forward pass (default: 1; measured in "
                        "docs/serve.md: more threads buy nothing for one small image and "
                        "collapse under CPU contention)")
    add_device(p)


def run(args: argparse.Namespace) -> int:
    from mnistlab.errors import MnistlabError

    missing = [m for m in ("fastapi", "uvicorn", "multipart")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise MnistlabError(f"serving needs {', '.join(missing)}: pip install 'mnistlab[serve]'")
    if not 0 <= args.port <= 65535:
        raise MnistlabError(f"--port: must be in 0..65535, got {args.port}")
    limits = _limits(args)
    if args.threads < 1:
        raise MnistlabError(f"--threads: must be at least 1, got {args.threads}")

    import torch

    from mnistlab.device import resolve_device
    from mnistlab.serve.app import create_app
    from mnistlab.serve.connections import uvicorn_server
    from mnistlab.serve.service import DigitModel

    _check_can_listen(args.host, args.port)
    torch.set_num_threads(args.threads)
    service = DigitModel.load(args.checkpoint, resolve_device(args.device))
    app = create_app(service, limits)
    info = service.info()
    accuracy = ("" if info["test_accuracy"] is None else
                f", test accuracy {info['test_accuracy']:.2%}")
    print(f"mnistlab: serving {info['name']} ({info['parameters']:,} parameters{accuracy}) "
          f"from {service.state['path']} on {info['device']}, {args.threads} thread"
          f"{'s' if args.threads > 1 else ''}")
    if not _loopback(args.host):
        print(f"mnistlab: warning: bound to {args.host}: other machines can reach this server, "
              "which has no authentication", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mnistlab: open http://{host}:{args.port}/ to draw a digit (Ctrl+C stops)",
          flush=True)
    uvicorn_server(app, args.host, args.port, limits).run()
    return 0


def _limits(args: argparse.Namespace):
    from mnistlab.errors import MnistlabError
    from mnistlab.serve.limits import LOOPBACK_HOSTS, Limits

    checks = [("--max-body-mb", args.max_body_mb, 0.001), ("--max-side", args.max_side, 28),
              ("--work-side", args.work_side, 28), ("--max-decodes", args.max_decodes, 1),
              ("--header-timeout", args.header_timeout, 0.1),
              ("--body-timeout", args.body_timeout, 0.1),
              ("--max-connections", args.max_connections, 1),
              ("--max-client-connections", args.max_client_connections, 1),
              ("--max-requests", args.max_requests, 1),
              ("--number-budget", args.number_budget, 0.1)]
    for flag, value, least in checks:
        if not value >= least:  # also refuses nan
            raise MnistlabError(f"{flag}: must be at least {least:g}, got {value:g}")
    if args.allowed_hosts is None:
        hosts = LOOPBACK_HOSTS if _loopback(args.host) else None
    elif args.allowed_hosts.strip() == "*":
        hosts = None
    else:
        hosts = tuple(h.strip().lower() for h in args.allowed_hosts.split(",") if h.strip())
        if not hosts:
            raise MnistlabError("--allowed-hosts: give host names, or '*' for any")
    return Limits(max_body_bytes=int(args.max_body_mb * 1024 * 1024), max_side=args.max_side,
                  work_side=args.work_side, max_decodes=args.max_decodes,
                  body_timeout_s=args.body_timeout, header_timeout_s=args.header_timeout,
                  max_connections=args.max_connections,
                  max_client_connections=min(args.max_client_connections,
                                             args.max_connections),
                  max_requests=args.max_requests, number_budget_s=args.number_budget,
                  allowed_hosts=hosts)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_can_listen(host: str, port: int) -> None:
    """A taken port or a foreign address as one line now, not a uvicorn log line later."""
    import socket

    from mnistlab.errors import MnistlabError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        raise MnistlabError(f"--host {host} --port {port}: cannot listen there "
                            f"({e.strerror or e})") from None
