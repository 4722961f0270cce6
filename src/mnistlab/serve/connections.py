"""Connection handling for uvicorn: deadlines and a connection cap that idle clients cannot
use to lock everyone else out.

uvicorn alone (0.54, h11) lets ~64 TCP connections that send nothing, or trickle header bytes,
hold the server: its keep-alive timer starts only after a first answer and restarts on every
byte, the body deadline only after the headers, and its `limit_concurrency` counts open
connections, so every further request - /healthz included - gets a plain-text 503 for as
long as they stay open. Here instead:

- a connection must deliver a request's complete headers within `header_timeout_s` of
  opening or of its previous answer, however it trickles them; otherwise it is closed (with a
  JSON 408 when part of a request had arrived);
- past `max_connections`, the connection that has waited longest for a request is closed to
  make room (one that is being answered is never closed); only when every connection is busy
  is the newcomer turned away, with a JSON 503;
- uvicorn's own concurrency limit is off: the number of requests processed at once is capped
  in the app (mnistlab.serve.app), where the 503 is JSON;
- malformed HTTP gets a JSON 400 with the security headers, not uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from mnistlab.serve.limits import SECURITY_HEADERS, Limits, error_body, raw_json_response

log = logging.getLogger("mnistlab.serve")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a fair connection cap."""

    limits: Limits = Limits()  # set on a subclass by `protocol_for`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._partial = 0  # bytes of a request whose headers are not complete yet
        self._start_waiting()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            self._partial += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers are complete
            self._stop_waiting()

    def on_response_complete(self) -> None:
        # Armed before uvicorn looks at pipelined requests, which disarm it again.
        self._start_waiting()
        super().on_response_complete()

    # ---- waiting for a request -----------------------------------------------------------

    @property
    def waiting(self) -> bool:
        return self._deadline is not None

    def _start_waiting(self) -> None:
        self._stop_waiting()
        self._partial = 0
        self._waiting_since = self.loop.time()
        self._deadline = self.loop.call_later(self.limits.header_timeout_s, self._expire)

    def _stop_waiting(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
        self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._partial:
            self._close_with(408, f"request headers not received within "
                                  f"{self.limits.header_timeout_s:g} s")
        else:  # an idle keep-alive connection: close quietly, as keep-alive timeouts do
            self.transport.close()

    def _close_with(self, status: int, message: str) -> None:
        self._stop_waiting()
        self.transport.write(raw_json_response(status, message,
                                               STATUS_PHRASES[status].decode()))
        self.transport.close()

    # ---- the connection cap --------------------------------------------------------------

    def _make_room(self) -> None:
        if len(self.connections) <= self.limits.max_connections:
            return
        idle = [c for c in self.connections
                if c is not self and isinstance(c, GuardedH11Protocol) and c.waiting
                and not c.transport.is_closing()]
        if idle:
            oldest = min(idle, key=lambda c: c._waiting_since)
            if oldest._partial:
                oldest._close_with(408, "connection closed to make room: request headers "
                                        "incomplete")
            else:
                oldest.transport.close()
            return
        log.warning("connection refused: %d connections are all busy", len(self.connections))
        self._close_with(503, f"server busy: {self.limits.max_connections} connections are "
                              "being answered; retry shortly")

    # ---- JSON instead of uvicorn's plain text --------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._stop_waiting()
        body = error_body(f"malformed HTTP request ({msg.rstrip('.')})")
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
        try:
            for event in (h11.Response(status_code=400, headers=headers,
                                       reason=STATUS_PHRASES[400]),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:  # h11 cannot answer in this state: write it raw
            self.transport.write(raw_json_response(400, "malformed HTTP request", "Bad Request"))
        self.transport.close()


def protocol_for(limits: Limits) -> type[GuardedH11Protocol]:
    """A protocol class bound to `limits` (uvicorn instantiates it once per connection)."""
    return type("MnistlabH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def uvicorn_server(app: Any, host: str, port: int, limits: Limits,
                   log_level: str = "warning") -> Any:
    """A uvicorn.Server for `app` with mnistlab's connection handling (not started)."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http=protocol_for(limits),
        # Our protocol closes idle connections itself; uvicorn's limit would count idle
        # connections and answer plain text, so it is off (the app caps requests instead).
        limit_concurrency=None, timeout_keep_alive=max(1, int(limits.header_timeout_s)),
        # Headers larger than this are a 400 (h11's default is 16 KiB).
        h11_max_incomplete_event_size=16 * 1024,
        # Connections a single busy moment may queue in the kernel before accept().
        backlog=min(2048, 4 * limits.max_connections),
        ws="none", lifespan="off", server_header=False, proxy_headers=False,
        access_log=False, timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)
