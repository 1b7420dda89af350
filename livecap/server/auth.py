"""The API key: HTTP requests are checked by a middleware, WebSockets by their route (so that a
refusal can say why in its close frame). /health and the page's scripts need no key."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from livecap.closecodes import POLICY
from livecap.server.live import close_with
from livecap.server.requests import RequestError

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
    """HTTP requests but the open paths need the key (a plain ASGI middleware: Starlette's
    BaseHTTPMiddleware would hide a client's disconnect from the endpoint)."""

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


async def key_checked(websocket: WebSocket) -> bool:
    """A WebSocket with the app's key (`app.state.api_key`), or refused with the reason."""
    api_key = websocket.app.state.api_key
    if authorized(api_key, websocket.headers.get("authorization"), websocket.query_params.get("api_key")):
        return True
    await websocket.accept()
    await close_with(websocket, POLICY, "missing or wrong API key (?api_key=KEY or Authorization: Bearer KEY)")
    return False
