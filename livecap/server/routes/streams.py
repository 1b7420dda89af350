"""WS /v1/stream: live captions for one audio stream (the protocol is in server/live.py); WS
/v1/listen: the same as Deepgram's live API (server/deepgram.py); WS /v1/realtime: as OpenAI's
Realtime transcription (server/realtime.py)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from livecap.server.auth import key_checked
from livecap.server.deepgram import DeepgramConnection
from livecap.server.live import serve_stream
from livecap.server.realtime import RealtimeConnection
from livecap.server.routes import hub_of

router = APIRouter()


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    if await key_checked(websocket):
        await serve_stream(websocket, hub_of(websocket))


@router.websocket("/v1/listen")
async def listen(websocket: WebSocket) -> None:
    if await key_checked(websocket, DeepgramConnection.error_message):
        await serve_stream(websocket, hub_of(websocket), DeepgramConnection)


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    if await key_checked(websocket, RealtimeConnection.error_message):
        await serve_stream(websocket, hub_of(websocket), RealtimeConnection)
