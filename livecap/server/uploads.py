"""OpenAI-compatible file transcription: POST /v1/audio/transcriptions and /v1/audio/translations.

The body is streamed through a byte counter into the multipart parser, so an upload over the limit
is refused (413) while it arrives, not after it filled the disk. The file is copied to a private
temporary directory under a fixed name (the client's file name never reaches a path), decoded by
PyAV, transcribed on the ASR pool of the model it names (loaded first when needed) off the event
loop, and removed. With `stream=true` the captions go out as server-sent events while the file is
transcribed (OpenAI's `transcript.text.delta` per caption, then `transcript.text.done`); a client
that reads slowly holds the transcription back (a file is not live), one that leaves stops it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from livecap.asr.base import DecodeOptions
from livecap.asr.registry import Lease
from livecap.errors import LivecapError
from livecap.messages import Caption
from livecap.output.writers import render_srt, render_txt, render_vtt
from livecap.pipeline.runner import NoDisplay, RunResult, run_stream
from livecap.pipeline.stream import Stream
from livecap.server.admission import Refused
from livecap.server.hub import Hub
from livecap.server.requests import RequestError, decode_options
from livecap.sources.file import FileSource

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
STREAMED_FORMATS = ("json", "text")  # as OpenAI: srt, vtt and verbose_json cannot be streamed
SSE_QUEUE = 16  # captions waiting for a slow reader before the transcription waits for it
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


def _open(model: Lease, upload: UploadFile, folder: Path, decode: DecodeOptions) -> Stream:
    """Copy the upload to a private file and open it as a (not live) stream; runs in a thread."""
    path = folder / "audio"
    with path.open("wb") as out:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, out, length=1 << 20)
    try:
        return model.stream(FileSource(path), live=False, decode=decode)
    except LivecapError as error:
        raise RequestError(str(error).replace(str(path), "the uploaded file")) from None


async def _transcribe(request: Request, model: Lease, upload: UploadFile, decode: DecodeOptions) -> RunResult:
    """Transcribe off the event loop; a client that goes away stops its transcription (the pool is shared)."""
    with tempfile.TemporaryDirectory(prefix="livecap-upload-") as folder:
        stream = await asyncio.to_thread(_open, model, upload, Path(folder), decode)
        job = asyncio.ensure_future(asyncio.to_thread(run_stream, stream))
        while not job.done():
            await asyncio.wait({job}, timeout=DISCONNECT_POLL_S)
            if not job.done() and await request.is_disconnected():
                stream.stop("the client went away")
                break
        return await job


def _render(result: RunResult, fmt: str, task: str, duration: float | None) -> Response:
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


class _Relay(NoDisplay):
    """Hands a file stream's finals to the event loop, waiting while `SSE_QUEUE` are unsent (the
    runner's thread may wait: a file is not live), and no more once the reader is `gone`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.captions: asyncio.Queue[Caption] = asyncio.Queue(SSE_QUEUE)
        self.gone = threading.Event()

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        future = asyncio.run_coroutine_threadsafe(self.captions.put(caption), self.loop)
        while not self.gone.is_set():
            try:
                future.result(timeout=DISCONNECT_POLL_S)
                return
            except concurrent.futures.TimeoutError:
                continue
        future.cancel()


def _sse(record: dict[str, Any]) -> str:
    return f"data: {json.dumps(record)}\n\n"


class _StreamedUpload(StreamingResponse):
    """The SSE response of one upload: a delta per caption as it is made, then the whole text (or an
    error event). It owns the opened stream, its temporary folder, its model and the upload slot, and
    gives them back however the response ends (done, failed, the client gone, or never started)."""

    def __init__(self, stream: Stream, folder: tempfile.TemporaryDirectory, hub: Hub, model: Lease) -> None:
        self.stream, self.folder, self.hub, self.model = stream, folder, hub, model
        self._released = False
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(self._events(), media_type="text/event-stream", headers=headers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release(None)

    def _release(self, result: RunResult | None) -> None:
        if not self._released:
            self._released = True
            self.folder.cleanup()
            self.model.release()
            self.hub.release_upload(result.stats if result else None)

    async def _events(self) -> AsyncIterator[str]:
        relay = _Relay(asyncio.get_running_loop())
        job = asyncio.ensure_future(asyncio.to_thread(run_stream, self.stream, relay))
        texts: list[str] = []
        result: RunResult | None = None
        try:
            while not (job.done() and relay.captions.empty()):
                taking = asyncio.ensure_future(relay.captions.get())
                await asyncio.wait({taking, job}, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    continue
                text = taking.result().text.strip()
                if text:
                    yield _sse({"type": "transcript.text.delta", "delta": " " * bool(texts) + text, "logprobs": None})
                    texts.append(text)
            result = job.result()
            if result.end_reason is not None or result.errors:
                reason = result.end_reason or result.errors[0]
                yield _sse(RequestError(f"transcription failed: {reason}", 500, "server_error").body())
            else:
                yield _sse({"type": "transcript.text.done", "text": " ".join(texts), "logprobs": None})
        finally:  # the client may have left (the response is cancelled): stop, then clean up
            relay.gone.set()
            self.stream.stop("the client went away")
            self._release(result or await job)


def _wants_stream(fields: dict[str, str], fmt: str) -> bool:
    value = (fields.get("stream") or "false").lower()
    if value not in ("true", "false"):
        raise RequestError('stream must be "true" or "false"')
    if value == "true" and fmt not in STREAMED_FORMATS:
        raise RequestError(f"stream=true takes response_format {' or '.join(STREAMED_FORMATS)}, not {fmt}")
    return value == "true"


async def _streamed(hub: Hub, model: Lease, upload: UploadFile, decode: DecodeOptions) -> StreamingResponse:
    """Open the upload (a file that cannot be read is still a plain 400), then stream its captions;
    the response owns the temporary folder, the model and the upload slot from here on."""
    folder = tempfile.TemporaryDirectory(prefix="livecap-upload-")
    try:
        stream = await asyncio.to_thread(_open, model, upload, Path(folder.name), decode)
    except BaseException:
        folder.cleanup()
        raise
    return _StreamedUpload(stream, folder, hub, model)


async def _take_place(request: Request, hub: Hub) -> None:
    """An upload place, now or after waiting in line (503 when none comes); a client that goes
    away meanwhile gives its place up."""
    entering = asyncio.ensure_future(hub.enter_upload())
    try:
        while not entering.done():
            await asyncio.wait({entering}, timeout=DISCONNECT_POLL_S)
            if not entering.done() and await request.is_disconnected():
                raise RequestError("the client went away while waiting for a place")
        entering.result()
    except Refused as refused:
        raise RequestError(f"busy: {hub.max_uploads} uploads are being transcribed; {refused}", 503,
                           "server_error") from None
    finally:
        entering.cancel()


async def transcription(request: Request, hub: Hub, task: str) -> Response:
    """One OpenAI-style transcription (or translation, into English) request: the form is read
    and checked, then the upload waits for a place (bounded), its model is leased and it is transcribed."""
    upload, fields = await read_form(request, hub.settings.max_upload_bytes)
    stats = None
    placed = streaming = False
    model: Lease | None = None
    try:
        try:
            fmt = fields.get("response_format") or "json"
            if fmt not in FORMATS:
                raise RequestError(f"response_format must be one of {', '.join(FORMATS)}")
            await _take_place(request, hub)
            placed = True
            model = await hub.lease(fields.get("model"), "upload")
            decode = decode_options(
                fields, multilingual=model.multilingual, model=model.name,
                task="translate" if task == "translate" else "transcribe",
            )
            if _wants_stream(fields, fmt):
                response = await _streamed(hub, model, upload, decode)
                streaming = True
                return response
            result = await _transcribe(request, model, upload, decode)
        finally:
            await upload.close()
            if model is not None and not streaming:  # a streamed response lets its model go itself
                model.release()
        if result.end_reason is not None or result.errors:
            raise RequestError(f"transcription failed: {result.end_reason or result.errors[0]}", 500, "server_error")
        stats = result.stats
        return _render(result, fmt, task, stats.audio_seconds if stats else 0.0)
    finally:
        if placed and not streaming:
            hub.release_upload(stats)
