"""The API key: HTTP requests are checked by a middleware, WebSockets by their route (so that a
refusal can say why in its close frame). /health and the page's scripts need no key."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from livecap.closecodes import POLICY
from livecap.output.records import error_record
from livecap.server.live import accept, close_with
from livecap.server.requests import RequestError

OPEN_PATHS = ("/health", "/ready")
# the page's scripts: code, no data, so open like /health (modules cannot send a key)
SCRIPTS = "/static/"


def authorized(api_key: str | None, authorization: str | None, query_key: str | None) -> bool:
    """True without a key, or when the request carries it (`Authorization: Bearer KEY`, Deepgram's
    `Token KEY`, or `?api_key=` for browsers, which cannot set headers on a WebSocket)."""
    if api_key is None:
        return True
    given = query_key or ""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() in ("bearer", "token"):
        given = value.strip()
    return hmac.compare_digest(given.encode(), api_key.encode())


def offered_key(protocols: str | None) -> str | None:
    """A key a browser put in `Sec-WebSocket-Protocol` (it cannot set headers): Deepgram's
    `token, KEY` or OpenAI's `realtime, openai-insecure-api-key.KEY`."""
    offered = [p.strip() for p in (protocols or "").split(",")]
    if len(offered) == 2 and offered[0] == "token":
        return offered[1]
    return next(
        (p.split(".", 1)[1] for p in offered if p.startswith("openai-insecure-api-key.")), None
    )


class RequireKey:
    """HTTP requests but the open paths need the key (a plain ASGI middleware: Starlette's
    BaseHTTPMiddleware would hide a client's disconnect from the endpoint)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] not in OPEN_PATHS
            and not scope["path"].startswith(SCRIPTS)
        ):
            request = Request(scope)
            if not authorized(
                self.api_key,
                request.headers.get("authorization"),
                request.query_params.get("api_key"),
            ):
                refusal = RequestError(
                    "missing or wrong API key (Authorization: Bearer KEY)",
                    401,
                    code="invalid_api_key",
                )
                response = JSONResponse(
                    refusal.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def key_checked(
    websocket: WebSocket, shape: Callable[[str], dict[str, Any]] = error_record
) -> bool:
    """A WebSocket with the app's key (`app.state.api_key`), or refused with the reason (in the
    protocol's `shape`)."""
    headers = websocket.headers
    given = websocket.query_params.get("api_key") or offered_key(
        headers.get("sec-websocket-protocol")
    )
    if authorized(websocket.app.state.api_key, headers.get("authorization"), given):
        return True
    await accept(websocket)
    await close_with(
        websocket,
        POLICY,
        "missing or wrong API key (Authorization: Bearer KEY or ?api_key=KEY)",
        shape,
    )
    return False
