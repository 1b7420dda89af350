"""POST /v1/audio/transcriptions and /v1/audio/translations: OpenAI-compatible uploads."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from livecap.server.routes import hub_of
from livecap.server.uploads import transcription

router = APIRouter()


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request) -> Response:
    return await transcription(request, hub_of(request), "transcribe")


@router.post("/v1/audio/translations")
async def translations(request: Request) -> Response:
    return await transcription(request, hub_of(request), "translate")
