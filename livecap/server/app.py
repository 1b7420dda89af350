"""The application: `create_app(config, settings)` builds a FastAPI app with no global state; its
models are opened when it starts (or passed in, shared, and then left open; or an engine passed in
as the default model, shared)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources

from fastapi import FastAPI, Request, WebSocket
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from livecap.asr.models import local_models
from livecap.asr.registry import ModelRecord, ModelRegistry
from livecap.config import Config
from livecap.engine import Engine, open_models
from livecap.server.hub import Hub
from livecap.server.live import close_with, serve_stream
from livecap.server.media import MediaLibrary
from livecap.server.requests import RequestError
from livecap.server.sessions import Sessions
from livecap.server.settings import ServerSettings, default_data_dir
from livecap.server.uploads import transcription

log = logging.getLogger("livecap.server")
OPEN_PATHS = ("/health",)
SCRIPTS = "/static/"  # the page's scripts: code, no data, so open like /health (modules cannot send a key)


def authorized(api_key: str | None, authorization: str | None, query_key: str | None) -> bool:
    """True without a key, or when the request carries it (Bearer header, or `?api_key=` for browsers,
    which cannot set headers on a WebSocket)."""
    if api_key is None:
        return True
    given = query_key or ""
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    return hmac.compare_digest(given.encode(), api_key.encode())


class RequireKey:
    """HTTP requests but /health need the key (a plain ASGI middleware: Starlette's BaseHTTPMiddleware
    would hide a client's disconnect from the endpoint). WebSockets are checked by their route, which
    can then say why in a close frame."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and not scope["path"].startswith(SCRIPTS):
            request = Request(scope)
            if not authorized(self.api_key, request.headers.get("authorization"), request.query_params.get("api_key")):
                refusal = RequestError(
                    "missing or wrong API key (Authorization: Bearer KEY)", 401, code="invalid_api_key"
                )
                response = JSONResponse(refusal.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def page() -> str:
    """The browser page with its style inlined; its scripts are ES modules under /static/."""
    static = resources.files("livecap.server") / "static"
    html = (static / "index.html").read_text(encoding="utf-8")
    return html.replace("{{style.css}}", (static / "style.css").read_text(encoding="utf-8"))


def scripts() -> dict[str, str]:
    """The page's modules by file name, read once: a request names one of these, never a path."""
    static = resources.files("livecap.server") / "static"
    return {item.name: item.read_text(encoding="utf-8") for item in static.iterdir() if item.name.endswith(".js")}


def open_server_models(config: Config, settings: ServerSettings, engine: Engine | None = None) -> ModelRegistry:
    """The models `settings` ask for, the default and preloaded ones loaded (`engine`, when given,
    is the default model, shared: not closed with the registry)."""
    return open_models(
        config, preload=settings.preload, ttl_s=settings.model_ttl_s, max_models=settings.max_models,
        wait_s=settings.model_wait_s, engine=engine,
    )


def model_listing(models: ModelRegistry) -> list[dict]:
    """GET /v1/models: the models available offline and those this server knows (its own, and the
    ones clients loaded), each with its state, figures and memory while loaded."""
    records = {r.name: r for r in models.records()}
    catalog = {m.name: m for m in local_models()}
    listed = []
    for name in dict.fromkeys([*records, *catalog]):
        entry = catalog.get(name)
        figures = models.describe(records.get(name) or ModelRecord(name))
        multilingual = figures.get("multilingual")
        listed.append({
            "id": name, "object": "model", "created": 0, "owned_by": "livecap", **figures,
            "multilingual": entry.multilingual if multilingual is None and entry is not None else multilingual,
            "available_offline": (entry.path is not None) if entry is not None else figures["loaded"],
        })
    return listed


def create_app(
    config: Config, settings: ServerSettings | None = None, *, engine: Engine | None = None,
    models: ModelRegistry | None = None,
) -> FastAPI:
    """The server for `config`; `models` or `engine`, when given, are shared and not closed here."""
    settings = settings or ServerSettings()
    html, modules = page(), scripts()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        used = models or await asyncio.to_thread(open_server_models, config, settings, engine)
        app.state.hub = Hub(used, settings)
        data_dir = settings.data_dir or await asyncio.to_thread(default_data_dir)
        library = await asyncio.to_thread(
            MediaLibrary, data_dir / "media", settings.max_media, settings.max_upload_bytes
        )
        app.state.sessions = Sessions(app.state.hub, library)
        log.info("media library in %s", library.folder)
        try:
            yield
        finally:
            await app.state.hub.drain()
            if models is None:
                await asyncio.to_thread(used.close)

    app = FastAPI(title="livecap", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def hub_of(request: Request | WebSocket) -> Hub:
        return request.app.state.hub

    def sessions_of(request: Request | WebSocket) -> Sessions:
        return request.app.state.sessions

    async def key_checked(websocket: WebSocket) -> bool:
        """WebSockets check the key themselves, so that a refusal can say why in its close frame."""
        if authorized(settings.api_key, websocket.headers.get("authorization"), websocket.query_params.get("api_key")):
            return True
        await websocket.accept()
        await close_with(websocket, 1008, "missing or wrong API key (?api_key=KEY or Authorization: Bearer KEY)")
        return False

    app.add_middleware(RequireKey, api_key=settings.api_key)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(RequestError(str(error.detail), error.status_code).body(), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("request failed: %s %s", request.method, request.url.path)
        return JSONResponse(RequestError("internal server error", 500, "server_error").body(), status_code=500)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        hub = hub_of(request)
        draining = hub.draining.is_set()
        return JSONResponse(
            {"status": "draining" if draining else "ok", "model": hub.model}, status_code=503 if draining else 200
        )

    @app.get("/status")
    async def status(request: Request) -> dict:
        return {**hub_of(request).status_report(), **sessions_of(request).status_report()}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(hub_of(request).registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict:
        return {"object": "list", "data": await asyncio.to_thread(model_listing, hub_of(request).models)}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await transcription(request, hub_of(request), "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request) -> Response:
        return await transcription(request, hub_of(request), "translate")

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        if await key_checked(websocket):
            await serve_stream(websocket, hub_of(websocket))

    @app.post("/v1/media", status_code=201)
    async def add_media(request: Request) -> dict:
        return asdict(await sessions_of(request).library.add(request))

    @app.get("/v1/media")
    async def list_media(request: Request) -> dict:
        return {"object": "list", "data": sessions_of(request).library.listing()}

    @app.delete("/v1/media/{media_id}")
    async def delete_media(request: Request, media_id: str) -> dict:
        sessions_of(request).library.delete(media_id)
        return {"id": media_id, "deleted": True}

    @app.post("/v1/sessions", status_code=201)
    async def create_session(request: Request) -> dict:
        return (await sessions_of(request).create(request)).describe()

    @app.get("/v1/sessions")
    async def list_sessions(request: Request) -> dict:
        return {"object": "list", "data": sessions_of(request).listing()}

    @app.get("/v1/sessions/{session_id}")
    async def get_session(request: Request, session_id: str) -> dict:
        return sessions_of(request).get(session_id).describe()

    @app.delete("/v1/sessions/{session_id}")
    async def stop_session(request: Request, session_id: str) -> dict:
        return (await sessions_of(request).stop(session_id)).describe()

    @app.websocket("/v1/sessions/{session_id}/captions")
    async def watch(websocket: WebSocket, session_id: str) -> None:
        if await key_checked(websocket):
            await sessions_of(websocket).watch(websocket, session_id)

    @app.websocket("/v1/sessions/{session_id}/publish")
    async def publish(websocket: WebSocket, session_id: str) -> None:
        if await key_checked(websocket):
            await sessions_of(websocket).publish(websocket, session_id)

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get(SCRIPTS + "{name}")
    async def script(name: str) -> Response:
        if name not in modules:
            raise HTTPException(404, "no such page script")
        return Response(modules[name], media_type="text/javascript")

    return app
