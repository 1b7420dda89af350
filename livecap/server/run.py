"""Running the app under uvicorn, with a shutdown that drains live streams first, and a bound on
clients that never finish sending a request's headers.

uvicorn's own shutdown closes open WebSockets at once (1012); on SIGTERM or Ctrl-C this server
first stops accepting, lets open streams send the finals of what they heard (bounded by
`drain_s`) and closes them with 1001, then lets uvicorn finish.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from http import HTTPStatus

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from livecap.config import Config, ServerConfig
from livecap.server.app import create_app, open_server_models
from livecap.server.live import MAX_TEXT_BYTES
from livecap.server.memory import limit_arenas


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown drains the app's live streams before closing connections."""

    def __init__(self, app: FastAPI, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # stop accepting first
            server.close()
        hub = getattr(self.app.state, "hub", None)
        if hub is not None:
            await hub.drain()
        await super().shutdown(sockets)


class HeadersBoundProtocol(H11Protocol):
    """uvicorn's h11 protocol with a bound on receiving a request's head: a connection that has not
    sent a whole one within `header_timeout_s` (of connecting, or of its next request's first byte)
    gets 408 and is closed, and while `max_pending` connections are still sending theirs, a new one
    gets 503. uvicorn bounds the head's size (h11's 16 kB), but not its time: its keep-alive timeout
    starts only after a response, and `limit_concurrency` is checked only once a head is in."""

    header_timeout_s = 10.0
    max_pending = 128
    pending: set[HeadersBoundProtocol] = set()  # one server's connections still sending a head

    @classmethod
    def bounded(cls, timeout_s: float, max_pending: int) -> type[HeadersBoundProtocol]:
        """The protocol for one server: its limits, and its own count of pending connections."""
        return type(
            cls.__name__,
            (cls,),
            {"header_timeout_s": timeout_s, "max_pending": max_pending, "pending": set()},
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_due: asyncio.TimerHandle | None = None
        if len(self.pending) >= self.max_pending:
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "too many connections are still sending their headers",
            )
        else:
            self._await_head()

    def data_received(self, data: bytes) -> None:
        if (
            self._head_due is None
            and self.conn.their_state is h11.IDLE
            and not self.transport.is_closing()
        ):
            self._await_head()  # the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            # the head is in (or the request failed, or upgraded)
            self._head_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._head_due is None and self.conn.trailing_data[0]:
            self._await_head()  # part of a pipelined next request is already in

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self.pending.add(self)
        self._head_due = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _head_done(self) -> None:
        self.pending.discard(self)
        if self._head_due is not None:
            self._head_due.cancel()
            self._head_due = None

    def _head_late(self) -> None:
        self._head_due = None
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            f"the request headers took longer than {self.header_timeout_s:g} s",
        )

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        """Answer `status` with `reason` and close (h11 has no request under way to answer)."""
        self.pending.discard(self)
        if self.transport.is_closing():
            return
        body = reason.encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: text/plain; "
            "charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def make_server(app: FastAPI, settings: ServerConfig, log_level: str = "info") -> DrainingServer:
    """A uvicorn server for `app` with the limits and drain time of `settings`."""
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on",
        http=HeadersBoundProtocol.bounded(settings.header_timeout_s, settings.max_pending_headers),
        # past our own limit: a reason, not a cut
        ws_max_size=2 * max(settings.max_frame_bytes, MAX_TEXT_BYTES),
        timeout_graceful_shutdown=settings.drain_s + 10,
        # a client that stops answering is closed
        ws_ping_interval=settings.ping_s, ws_ping_timeout=settings.ping_s,
    )
    return DrainingServer(app, config)


def serve(config: Config, api_key: str | None = None) -> None:
    """Check Redis (with --redis-url) and load the default and preloaded models (either fails here,
    as a one-line error, before anything listens), serve until SIGTERM or Ctrl-C, drain, exit (the
    `livecap serve` command). The heap's arenas are limited before any thread starts
    (server/memory.py says why)."""
    limit_arenas()
    if config.server.redis_url is not None:
        from livecap.server.cluster import check_reachable

        check_reachable(config.server.redis_url)
    handler = logging.StreamHandler()
    # beside uvicorn's own lines
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    server_log = logging.getLogger("livecap.server")
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    models = open_server_models(config)
    try:
        make_server(create_app(config, api_key=api_key, models=models), config.server).run()
    finally:
        models.close()
