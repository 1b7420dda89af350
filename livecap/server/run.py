"""Running the app under uvicorn, with a shutdown that drains live streams first.

uvicorn's own shutdown closes open WebSockets at once (1012); on SIGTERM or Ctrl-C this server
first stops accepting, lets open streams send the finals of what they heard (bounded by
`drain_s`) and closes them with 1001, then lets uvicorn finish.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from fastapi import FastAPI

from livecap.config import Config, ServerConfig
from livecap.server.app import create_app, open_server_models
from livecap.server.live import MAX_TEXT_BYTES


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


def make_server(app: FastAPI, settings: ServerConfig, log_level: str = "info") -> DrainingServer:
    """A uvicorn server for `app` with the limits and drain time of `settings`."""
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on",
        ws_max_size=2 * max(settings.max_frame_bytes, MAX_TEXT_BYTES),  # past our own limit: a reason, not a cut
        timeout_graceful_shutdown=settings.drain_s + 10,
        ws_ping_interval=settings.ping_s, ws_ping_timeout=settings.ping_s,  # a client that stops answering is closed
    )
    return DrainingServer(app, config)


def serve(config: Config, api_key: str | None = None) -> None:
    """Check Redis (with --redis-url) and load the default and preloaded models (either fails here,
    as a one-line error, before anything listens), serve until SIGTERM or Ctrl-C, drain, exit (the
    `livecap serve` command)."""
    if config.server.redis_url is not None:
        from livecap.server.cluster import check_reachable

        check_reachable(config.server.redis_url)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))  # beside uvicorn's own lines
    server_log = logging.getLogger("livecap.server")
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    models = open_server_models(config)
    try:
        make_server(create_app(config, api_key=api_key, models=models), config.server).run()
    finally:
        models.close()
