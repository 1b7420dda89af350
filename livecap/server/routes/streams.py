"""WS /v1/stream: live captions for one audio stream (the protocol is in server/live.py)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from livecap.server.auth import key_checked
from livecap.server.live import serve_stream
from livecap.server.routes import hub_of

router = APIRouter()


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    if await key_checked(websocket):
        await serve_stream(websocket, hub_of(websocket))
