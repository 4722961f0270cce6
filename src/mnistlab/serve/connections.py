"""Connection handling for uvicorn: deadlines and connection caps that idle or slow clients
cannot use to lock everyone else out.

uvicorn alone (0.54, h11) lets ~64 TCP connections that send nothing, or trickle header bytes,
hold the server: its keep-alive timer starts only after a first answer and restarts on every
byte, the body deadline only after the headers, and its `limit_concurrency` counts open
connections, so every further request - /healthz included - gets a plain-text 503 for as
long as they stay open. Here instead:

- a connection must deliver a request's complete headers within `header_timeout_s` of
  opening or of its previous answer, however it trickles them; otherwise it is closed (with a
  JSON 408 when part of a request had arrived);
- a request's line and headers may take at most 16 KiB (MAX_HEADER_BYTES), whether they
  trickle in or arrive in one read (h11's own limit applies only to incomplete ones);
- past `max_connections` in all, or `max_client_connections` from the newcomer's address,
  the connection that has waited longest - for a request, or for the rest of a request's
  body - is closed to make room (one whose request is in and being answered is never
  closed); only when every such connection is busy is the newcomer turned away, with a JSON
  503. So one client can hold at most its share, and sending headers then no body holds a
  connection no better than sending nothing;
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

from mnistlab.serve.limits import (
    MAX_HEADER_BYTES,
    SECURITY_HEADERS,
    Limits,
    error_body,
    raw_json_response,
)

log = logging.getLogger("mnistlab.serve")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a fair connection cap."""

    limits: Limits = Limits()  # set on a subclass by `protocol_for`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._partial = 0  # bytes of a request whose headers are not complete yet
        self._head = bytearray()  # its first MAX_HEADER_BYTES + 4 bytes
        self._body_since: float | None = None  # headers in, body not yet: since when
        self._start_waiting()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            self._partial += len(data)
            if len(self._head) < MAX_HEADER_BYTES + 4:
                self._head += data[: MAX_HEADER_BYTES + 4 - len(self._head)]
                if (len(self._head) >= MAX_HEADER_BYTES + 4
                        and b"\r\n\r\n" not in self._head):
                    self._close_with(431, f"request headers larger than "
                                          f"{MAX_HEADER_BYTES // 1024} KiB")
                    return
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers are complete
            self._stop_waiting()
            self._body_since = self.loop.time()

    @property
    def receiving_body(self) -> bool:
        """Headers in, the rest of the body still awaited: the request is not being worked
        on yet, so the connection may make room like an idle one."""
        cycle = self.cycle
        return (cycle is not None and cycle.more_body and not cycle.response_started
                and not cycle.disconnected)

    def on_response_complete(self) -> None:
        # Armed before uvicorn looks at pipelined requests, which disarm it again.
        self._start_waiting()
        super().on_response_complete()

    # ---- waiting for a request -----------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Waiting for a request, or for the rest of one's body: nothing to do yet."""
        return self._deadline is not None or self.receiving_body

    @property
    def waiting_since(self) -> float:
        return self._waiting_since if self._deadline is not None else (
            self._body_since or self._waiting_since)

    def _start_waiting(self) -> None:
        self._stop_waiting()
        self._partial = 0
        self._head = bytearray()
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

    @property
    def address(self) -> str | None:
        return self.client[0] if self.client else None

    def _make_room(self) -> None:
        """Called for a new connection: past a cap, the longest-waiting connection that it
        counts makes room; if none is waiting, the newcomer is refused."""
        open_ = [c for c in self.connections
                 if isinstance(c, GuardedH11Protocol) and not c.transport.is_closing()]
        mine = [c for c in open_ if c.address == self.address]
        if len(mine) > self.limits.max_client_connections:
            crowd = mine
            cap = f"{self.limits.max_client_connections} connections from your address"
        elif len(open_) > self.limits.max_connections:
            crowd, cap = open_, f"{self.limits.max_connections} connections"
        else:
            return
        idle = [c for c in crowd if c is not self and c.waiting]
        if idle:
            min(idle, key=lambda c: c.waiting_since)._give_up_for_room()
            return
        log.warning("connection refused: %s, all busy", cap)
        self._close_with(503, f"server busy: {cap} are being answered; retry shortly")

    def _give_up_for_room(self) -> None:
        if self.receiving_body:
            # The app's receive() then reports a disconnect, and it stops waiting.
            self._close_with(408, "connection closed to make room: request body incomplete")
        elif self._partial:
            self._close_with(408, "connection closed to make room: request headers "
                                  "incomplete")
        else:
            self.transport.close()

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
