"""OpenAI-compatible file transcription: POST /v1/audio/transcriptions and /v1/audio/translations.

The body is streamed through a byte counter into the multipart parser, so an upload over the limit
is refused (413) while it arrives, not after it filled the disk. The file is copied to a private
temporary directory under a fixed name (the client's file name never reaches a path), decoded by
PyAV, transcribed on the shared ASR pool off the event loop, and removed.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from livecap.asr.base import DecodeOptions
from livecap.engine import Engine
from livecap.errors import LivecapError
from livecap.messages import Caption
from livecap.output.writers import render_srt, render_txt, render_vtt
from livecap.pipeline.session import SessionResult, run_session
from livecap.pipeline.stream import Stream
from livecap.server.hub import Hub
from livecap.server.requests import RequestError, check_model, decode_options
from livecap.sources.file import FileSource

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
FORM_OVERHEAD = 64 * 1024  # multipart headers and the small fields around the file
DISCONNECT_POLL_S = 0.5


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestError(f"the upload is over the {limit // (1024 * 1024)} MiB limit", status=413)
        yield chunk


async def read_form(request: Request, max_bytes: int) -> tuple[UploadFile, dict[str, str]]:
    """The uploaded file and the text fields, within the size limit."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestError("send the audio as multipart/form-data with a `file` field")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + FORM_OVERHEAD:
        raise RequestError(f"the upload is over the {max_bytes // (1024 * 1024)} MiB limit", status=413)
    parser = MultiPartParser(
        request.headers, _limited(request, max_bytes + FORM_OVERHEAD), max_files=1, max_fields=20,
        max_part_size=FORM_OVERHEAD,
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise RequestError(f"malformed multipart form: {error.message}") from None
    except ClientDisconnect:
        raise RequestError("the client went away during the upload", status=400) from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        await form.close()
        raise RequestError("the `file` field (the audio) is missing")
    if upload.size is not None and upload.size > max_bytes:
        await form.close()
        raise RequestError(f"the upload is over the {max_bytes // (1024 * 1024)} MiB limit", status=413)
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    return upload, fields


def _open(engine: Engine, upload: UploadFile, folder: Path, decode: DecodeOptions) -> Stream:
    """Copy the upload to a private file and open it as a (not live) stream; runs in a thread."""
    path = folder / "audio"
    with path.open("wb") as out:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, out, length=1 << 20)
    try:
        return engine.stream(FileSource(path), live=False, decode=decode)
    except LivecapError as error:
        raise RequestError(str(error).replace(str(path), "the uploaded file")) from None


async def _transcribe(request: Request, engine: Engine, upload: UploadFile, decode: DecodeOptions) -> SessionResult:
    """Transcribe off the event loop; a client that goes away stops its transcription (the pool is shared)."""
    with tempfile.TemporaryDirectory(prefix="livecap-upload-") as folder:
        stream = await asyncio.to_thread(_open, engine, upload, Path(folder), decode)
        job = asyncio.ensure_future(asyncio.to_thread(run_session, stream))
        while not job.done():
            await asyncio.wait({job}, timeout=DISCONNECT_POLL_S)
            if not job.done() and await request.is_disconnected():
                stream.stop("the client went away")
                break
        return await job


def _render(result: SessionResult, fmt: str, task: str, duration: float | None) -> Response:
    captions = result.captions
    text = " ".join(c.text.strip() for c in captions)
    if fmt == "json":
        return JSONResponse({"text": text})
    if fmt == "verbose_json":
        languages = [c.language for c in captions if c.language]
        return JSONResponse({
            "task": task,
            "language": max(set(languages), key=languages.count) if languages else None,
            "duration": duration,
            "text": text,
            "segments": [_segment(i, c) for i, c in enumerate(captions)],
            "words": [w.to_dict() for c in captions for w in c.words],
        })
    renderers = {"text": render_txt, "srt": render_srt, "vtt": render_vtt}
    return PlainTextResponse(renderers[fmt](captions))


def _segment(index: int, caption: Caption) -> dict[str, Any]:
    return {"id": index, "start": round(caption.start, 3), "end": round(caption.end, 3), "text": caption.text,
            "words": [w.to_dict() for w in caption.words]}


async def transcription(request: Request, hub: Hub, task: str) -> Response:
    """One OpenAI-style transcription (or translation, into English) request."""
    if not hub.admit_upload():
        raise RequestError(f"busy: {hub.max_uploads} uploads are being transcribed; try again", 503, "server_error")
    stats = None
    try:
        upload, fields = await read_form(request, hub.settings.max_upload_bytes)
        try:
            check_model(fields.get("model"), hub.model)
            fmt = fields.get("response_format") or "json"
            if fmt not in FORMATS:
                raise RequestError(f"response_format must be one of {', '.join(FORMATS)}")
            decode = decode_options(
                fields, multilingual=hub.engine.backend.multilingual, model=hub.model,
                task="translate" if task == "translate" else "transcribe",
            )
            result = await _transcribe(request, hub.engine, upload, decode)
        finally:
            await upload.close()
        if result.end_reason is not None or result.errors:
            raise RequestError(f"transcription failed: {result.end_reason or result.errors[0]}", 500, "server_error")
        stats = result.stats
        return _render(result, fmt, task, stats.audio_seconds if stats else 0.0)
    finally:
        hub.release_upload(stats)
