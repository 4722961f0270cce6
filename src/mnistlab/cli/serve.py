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
    p.add_argument("--max-body-mb", type=float, default=2.0, metavar="MB",
                   help="largest request body accepted (default: 2)")
    p.add_argument("--max-side", type=int, default=4096, metavar="PX",
                   help="largest image width or height accepted (default: 4096)")
    add_device(p)


def run(args: argparse.Namespace) -> int:
    from mnistlab.errors import MnistlabError

    missing = [m for m in ("fastapi", "uvicorn", "multipart")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise MnistlabError(f"serving needs {', '.join(missing)}: pip install 'mnistlab[serve]'")
    if not 0 <= args.port <= 65535:
        raise MnistlabError(f"--port: must be in 0..65535, got {args.port}")
    if args.max_body_mb <= 0 or args.max_side < 28:
        raise MnistlabError("--max-body-mb must be positive and --max-side at least 28")

    import uvicorn

    from mnistlab.device import resolve_device
    from mnistlab.serve.app import create_app
    from mnistlab.serve.limits import Limits
    from mnistlab.serve.service import DigitModel

    _check_can_listen(args.host, args.port)
    service = DigitModel.load(args.checkpoint, resolve_device(args.device))
    limits = Limits(max_body_bytes=int(args.max_body_mb * 1024 * 1024), max_side=args.max_side)
    app = create_app(service, limits)
    info = service.info()
    accuracy = f", test accuracy {info['test_accuracy']:.2%}" if info["test_accuracy"] else ""
    print(f"mnistlab: serving {info['name']} ({info['parameters']:,} parameters{accuracy}) "
          f"from {info['checkpoint']} on {info['device']}")
    if not _loopback(args.host):
        print(f"mnistlab: warning: bound to {args.host}: other machines can reach this server, "
              "which has no authentication", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mnistlab: open http://{host}:{args.port}/ to draw a digit (Ctrl+C stops)")
    # limit_concurrency: beyond it uvicorn answers 503 at once rather than queueing forever.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                timeout_keep_alive=5, limit_concurrency=64)
    return 0


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
