"""The application: `create_app(config)` builds a FastAPI app with no global state from the
configuration (its [server] section says what it allows); its models are opened when it starts
(or passed in, shared, and then left open; or an engine passed in as the default model, shared).
The routes are in `server/routes/`, one router per resource."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from livecap.asr.registry import ModelRegistry
from livecap.config import Config, ServerConfig
from livecap.engine import Engine, open_models
from livecap.server.auth import RequireKey
from livecap.server.hub import Hub
from livecap.server.media import MediaLibrary, default_data_dir
from livecap.server.requests import RequestError
from livecap.server.routes import audio, media, sessions, status, streams
from livecap.server.routes.page import page_router
from livecap.server.sessions import Sessions
from livecap.server.state import SharedState

log = logging.getLogger("livecap.server")


def open_server_models(config: Config, engine: Engine | None = None) -> ModelRegistry:
    """The models the [server] section asks for, the default and preloaded ones loaded (`engine`,
    when given, is the default model, shared: not closed with the registry)."""
    settings = config.server
    return open_models(
        config,
        preload=settings.preload or (),
        ttl_s=settings.model_ttl_s,
        max_models=settings.max_models,
        wait_s=settings.model_wait_s,
        engine=engine,
    )


def shared_state(settings: ServerConfig) -> SharedState:
    """This server alone, or a replica of a cluster on Redis (the client is loaded only then)."""
    if settings.redis_url is None:
        return SharedState()
    from livecap.server.cluster import RedisState

    return RedisState(
        settings.redis_url, settings.replica or f"{socket.gethostname()}:{settings.port}", settings
    )


def create_app(
    config: Config,
    *,
    api_key: str | None = None,
    engine: Engine | None = None,
    models: ModelRegistry | None = None,
) -> FastAPI:
    """The server for `config`; `api_key`: required of every client (None: no key); `models` or
    `engine`, when given, are shared and not closed here."""
    settings = config.server

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        used = models or await asyncio.to_thread(open_server_models, config, engine)
        app.state.hub = Hub(used, settings)
        shared = shared_state(settings)
        data_dir = (
            Path(settings.data_dir)
            if settings.data_dir
            else await asyncio.to_thread(default_data_dir)
        )
        library = await asyncio.to_thread(
            MediaLibrary, data_dir / "media", settings.max_media, settings.max_upload_bytes, shared
        )
        app.state.sessions = Sessions(app.state.hub, library, shared)
        log.info("media library in %s", library.folder)
        await app.state.hub.start()
        await shared.start(app.state.sessions)
        try:
            yield
        finally:
            await app.state.hub.drain()
            app.state.hub.stop()
            await shared.close()
            if models is None:
                await asyncio.to_thread(used.close)

    app = FastAPI(
        title="livecap", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.api_key = api_key
    app.add_middleware(RequireKey, api_key=api_key)
    _json_errors(app)
    for router in (
        status.router, audio.router, streams.router, media.router, sessions.router, page_router(),
    ):
        app.include_router(router)
    return app


def _json_errors(app: FastAPI) -> None:
    """Every error as {"error": {...}} with its status; an unexpected one is logged and a 500."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(
            RequestError(str(error.detail), error.status_code).body(), status_code=error.status_code
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("request failed: %s %s", request.method, request.url.path)
        return JSONResponse(
            RequestError("internal server error", 500, "server_error").body(), status_code=500
        )
