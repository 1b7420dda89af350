"""/v1/sessions: shared sessions (create from a JSON body, list, get, stop) and their viewers' and
publisher's WebSockets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, WebSocket

from livecap.server.auth import key_checked
from livecap.server.requests import RequestError
from livecap.server.routes import sessions_of

MAX_BODY_BYTES = 16 * 1024
FIELDS = ("source", "media", "model", "language", "translate_to", "prompt", "hotwords")

router = APIRouter()


@router.post("/v1/sessions", status_code=201)
async def create_session(request: Request) -> dict:
    fields = await _json_body(request)
    kind = fields.get("source", "media" if "media" in fields else None)
    if kind not in ("media", "publish"):
        raise RequestError('give "media": an id from GET /v1/media, or "source": "publish"')
    if kind == "publish" and {"language", "prompt", "hotwords"} & set(fields):
        raise RequestError(
            "a publish session is decoded as its publisher's start message says: give language, "
            "prompt and hotwords there"
        )
    decode_fields = {
        name: fields[name] for name in ("language", "prompt", "hotwords") if name in fields
    }
    translate_to = fields.get("translate_to") or None
    sessions = sessions_of(request)
    session = await sessions.create(
        kind, fields.get("model"), decode_fields, fields.get("media"), translate_to
    )
    return session.describe()


@router.get("/v1/sessions")
async def list_sessions(request: Request) -> dict:
    return {"object": "list", "data": await sessions_of(request).listing()}


@router.get("/v1/sessions/{session_id}")
async def get_session(request: Request, session_id: str) -> dict:
    return (await sessions_of(request).get(session_id)).describe()


@router.delete("/v1/sessions/{session_id}")
async def stop_session(request: Request, session_id: str) -> dict:
    return await sessions_of(request).stop(session_id)


@router.websocket("/v1/sessions/{session_id}/captions")
async def watch(websocket: WebSocket, session_id: str) -> None:
    if await key_checked(websocket):
        await sessions_of(websocket).watch(websocket, session_id)


@router.websocket("/v1/sessions/{session_id}/publish")
async def publish(websocket: WebSocket, session_id: str) -> None:
    if await key_checked(websocket):
        await sessions_of(websocket).publish(websocket, session_id)


async def _json_body(request: Request) -> Mapping[str, Any]:
    """A small JSON object body, its fields checked against FIELDS."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise RequestError(f"the request body is over {MAX_BODY_BYTES} bytes", 413)
    try:
        fields = json.loads(body or b"{}")
    except ValueError:
        raise RequestError("the body must be a JSON object") from None
    if not isinstance(fields, dict):
        raise RequestError("the body must be a JSON object")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}: use {', '.join(FIELDS)}")
    for name in ("source", "media", "model", "translate_to"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise RequestError(f"{name} must be a string")
    return fields
