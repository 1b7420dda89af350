"""OpenAI-compatible file transcription: POST /v1/audio/transcriptions and /v1/audio/translations.

The body is streamed through a byte counter into the multipart parser, so an upload over the limit
is refused (413) while it arrives, not after it filled the disk. The file is copied to a private
temporary directory under a fixed name (the client's file name never reaches a path), decoded by
PyAV, transcribed on the ASR pool of the model it names (loaded first when needed) off the event
loop, and removed. With `stream=true` the captions go out as server-sent events while the file is
transcribed (OpenAI's `transcript.text.delta` per caption, then `transcript.text.done`); a client
that reads slowly holds the transcription back (a file is not live).

Uploads wait in their own bounded line for a place (`--max-uploads`); a streamed one that waits is
told its place with the live streams' `queued` event. A client that leaves, while waiting or while
its file is transcribed, is noticed at once: it gives up its place, and its stream's work not yet
started is withdrawn from the shared pool (only the calls already running finish).
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
from typing import Any, TypeVar

import anyio
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
from livecap.server.admission import Refused, Waiter, queued_record
from livecap.server.hub import Hub
from livecap.server.requests import RequestError, decode_options
from livecap.sources.file import FileSource

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
STREAMED_FORMATS = ("json", "text")  # as OpenAI: srt, vtt and verbose_json cannot be streamed
SSE_QUEUE = 16  # captions waiting for a slow reader before the transcription waits for it
FORM_OVERHEAD = 64 * 1024  # multipart headers and the small fields around the file
DISCONNECT_POLL_S = 0.5  # how often a runner thread waiting for a slow reader looks whether it left

T = TypeVar("T")


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestError(
                f"the upload is over the {limit // (1024 * 1024)} MiB limit", status=413
            )
        yield chunk


async def read_form(request: Request, max_bytes: int) -> tuple[UploadFile, dict[str, str]]:
    """The uploaded file and the text fields, within the size limit."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestError("send the audio as multipart/form-data with a `file` field")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + FORM_OVERHEAD:
        raise RequestError(
            f"the upload is over the {max_bytes // (1024 * 1024)} MiB limit", status=413
        )
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
        raise RequestError(
            f"the upload is over the {max_bytes // (1024 * 1024)} MiB limit", status=413
        )
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


async def _client_gone(request: Request) -> None:
    """Returns as soon as the client goes away (its body is read by now): a disconnect is noticed at
    once, not at the next poll, so no more of a file nobody waits for is started meanwhile."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _abandon(hub: Hub, stream: Stream) -> None:
    """The client left: stop its stream (what is queued of it is withdrawn from the shared pool)."""
    hub.uploads_abandoned += 1
    stream.stop("the client went away")


def _decode(fields: dict[str, str], model: Lease, task: str) -> DecodeOptions:
    return decode_options(fields, multilingual=model.multilingual, model=model.name,
                          task="translate" if task == "translate" else "transcribe")


def _busy(hub: Hub, refused: Refused) -> RequestError:
    return RequestError(
        f"busy: {hub.max_uploads} uploads are being transcribed; {refused}", 503, "server_error"
    )


async def _transcribe(
    gone: asyncio.Future, hub: Hub, model: Lease, upload: UploadFile, decode: DecodeOptions
) -> RunResult:
    """Transcribe off the event loop; a client that goes away
    stops its transcription (the pool is shared)."""
    with tempfile.TemporaryDirectory(prefix="livecap-upload-") as folder:
        stream = await asyncio.to_thread(_open, model, upload, Path(folder), decode)
        job = asyncio.ensure_future(asyncio.to_thread(run_stream, stream))
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            _abandon(hub, stream)
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
    return {
        "id": index,
        "start": round(caption.start, 3),
        "end": round(caption.end, 3),
        "text": caption.text,
        "words": [w.to_dict() for w in caption.words],
    }


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


async def _drain(items: asyncio.Queue[T], job: asyncio.Future) -> AsyncIterator[T]:
    """Each item put in `items`, as it comes, until `job` is done and none is left."""
    while not (job.done() and items.empty()):
        taking = asyncio.ensure_future(items.get())
        try:
            await asyncio.wait({taking, job}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            taken = taking.done()
            if not taken:
                taking.cancel()
        if taken:
            yield taking.result()


def _sse(record: dict[str, Any]) -> str:
    return f"data: {json.dumps(record)}\n\n"


class _StreamedUpload(StreamingResponse):
    """The SSE response of one upload: while it waits for a place, a `queued` event at each new
    position (the live streams' record); then a delta per caption as it is made, then the whole
    text (or an error event). It owns the upload, its place (or its place in line), the model, the
    opened stream and its temporary folder, and gives them back however the response ends (done,
    failed, the client gone, or never started)."""

    def __init__(self, hub: Hub, upload: UploadFile, fields: dict[str, str], task: str,
                 waiter: Waiter | None, notices: asyncio.Queue[dict[str, Any]]) -> None:
        """`waiter`: its place in line (None: it has a place)."""
        self.hub, self.upload, self.fields, self.task = hub, upload, fields, task
        self.waiter, self.notices = waiter, notices
        self.placed = waiter is None
        self.model: Lease | None = None
        self.stream: Stream | None = None
        self.folder: tempfile.TemporaryDirectory | None = None
        self.result: RunResult | None = None
        self._closed = False
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(self._events(), media_type="text/event-stream", headers=headers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.close()

    async def prepare(self) -> None:
        """With its place: lease the model named, check the decoding options against it, and open
        the upload as a stream (a `RequestError` says what is wrong)."""
        self.model = await self.hub.lease(self.fields.get("model"), "upload")
        decode = _decode(self.fields, self.model, self.task)
        self.folder = tempfile.TemporaryDirectory(prefix="livecap-upload-")
        self.stream = await asyncio.to_thread(
            _open, self.model, self.upload, Path(self.folder.name), decode
        )

    async def close(self) -> None:
        """Give back what it holds, once."""
        if self._closed:
            return
        self._closed = True
        if self.waiter is not None and not self.placed:
            self.hub.uploads_line.give_up(self.waiter)  # never had its place, or never used it
        await self.upload.close()
        if self.folder is not None:
            self.folder.cleanup()
        if self.model is not None:
            self.model.release()
        if self.placed:
            self.hub.release_upload(self.result.stats if self.result else None)

    async def _events(self) -> AsyncIterator[str]:
        try:
            if not self.placed:
                async for record in self._wait_in_line():
                    yield _sse(record)
                await self.prepare()
            async for event in self._transcript():
                yield event
        except Refused as refused:
            yield _sse(_busy(self.hub, refused).body())
        except RequestError as error:
            yield _sse(error.body())

    async def _wait_in_line(self) -> AsyncIterator[dict[str, Any]]:
        """The `queued` records until the upload has its place; `Refused` past the wait allowed."""
        assert self.waiter is not None
        waiting = asyncio.ensure_future(self.hub.wait_upload(self.waiter))
        try:
            async for record in _drain(self.notices, waiting):
                yield record
        finally:
            if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
                self.placed = True
            else:
                waiting.cancel()
        waiting.result()

    async def _transcript(self) -> AsyncIterator[str]:
        assert self.stream is not None
        relay = _Relay(asyncio.get_running_loop())
        job = asyncio.ensure_future(asyncio.to_thread(run_stream, self.stream, relay))
        texts: list[str] = []
        try:
            async for caption in _drain(relay.captions, job):
                text = caption.text.strip()
                if text:
                    yield _sse(
                        {
                            "type": "transcript.text.delta",
                            "delta": " " * bool(texts) + text,
                            "logprobs": None,
                        }
                    )
                    texts.append(text)
            result = job.result()
            if result.end_reason is not None or result.errors:
                reason = result.end_reason or result.errors[0]
                yield _sse(
                    RequestError(f"transcription failed: {reason}", 500, "server_error").body()
                )
            else:
                yield _sse(
                    {"type": "transcript.text.done", "text": " ".join(texts), "logprobs": None}
                )
        finally:  # the client may have left (the response is cancelled): stop, and let the run end
            relay.gone.set()
            if not job.done():
                _abandon(self.hub, self.stream)
            with anyio.CancelScope(shield=True):
                # bounded: after a stop only the running calls finish
                await asyncio.wait({job})
            if job.exception() is None:
                self.result = job.result()


def _wants_stream(fields: dict[str, str], fmt: str) -> bool:
    value = (fields.get("stream") or "false").lower()
    if value not in ("true", "false"):
        raise RequestError('stream must be "true" or "false"')
    if value == "true" and fmt not in STREAMED_FORMATS:
        raise RequestError(
            f"stream=true takes response_format {' or '.join(STREAMED_FORMATS)}, not {fmt}"
        )
    return value == "true"


async def _streamed(
    hub: Hub, upload: UploadFile, fields: dict[str, str], task: str
) -> StreamingResponse:
    """The SSE response, which owns the upload from here on. With a place now, the upload is
    opened first (a file that cannot be read is still a plain 400); without one, the response
    starts at once and tells the upload's place in line (errors found once it has its place come
    as an error event). A full line is a plain 503."""
    notices: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    try:
        waiter = hub.queue_upload(
            lambda position, eta: notices.put_nowait(queued_record(position, eta))
        )
    except Refused as refused:
        await upload.close()
        raise _busy(hub, refused) from None
    response = _StreamedUpload(hub, upload, fields, task, waiter, notices)
    if waiter is None:
        try:
            await response.prepare()
        except BaseException:
            await response.close()
            raise
    return response


async def _take_place(hub: Hub, gone: asyncio.Future) -> None:
    """An upload place, now or after waiting in line (503 when none comes); a client that goes
    away meanwhile gives its place up."""
    entering = asyncio.ensure_future(hub.enter_upload())
    try:
        await asyncio.wait({entering, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not entering.done():
            raise RequestError("the client went away while waiting for a place")
        entering.result()
    except Refused as refused:
        raise _busy(hub, refused) from None
    finally:
        entering.cancel()


async def transcription(request: Request, hub: Hub, task: str) -> Response:
    """One OpenAI-style transcription (or translation, into English) request: the form
    is read and checked, then the upload waits for a place (bounded), its model is
    leased and it is transcribed."""
    upload, fields = await read_form(request, hub.settings.max_upload_bytes)
    try:
        fmt = fields.get("response_format") or "json"
        if fmt not in FORMATS:
            raise RequestError(f"response_format must be one of {', '.join(FORMATS)}")
        streamed = _wants_stream(fields, fmt)
    except RequestError:
        await upload.close()
        raise
    if streamed:
        return await _streamed(hub, upload, fields, task)
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        return await _whole(gone, hub, upload, fields, task, fmt)
    finally:
        gone.cancel()
        await upload.close()


async def _whole(
    gone: asyncio.Future, hub: Hub, upload: UploadFile, fields: dict[str, str], task: str, fmt: str
) -> Response:
    """The whole transcript in one response, once the upload has a place and is transcribed."""
    await _take_place(hub, gone)
    stats = None
    try:
        with await hub.lease(fields.get("model"), "upload") as model:
            result = await _transcribe(gone, hub, model, upload, _decode(fields, model, task))
        stats = result.stats  # an upload stopped part-way counts the audio it took too
        if result.end_reason is not None or result.errors:
            raise RequestError(
                f"transcription failed: {result.end_reason or result.errors[0]}",
                500,
                "server_error",
            )
        return _render(result, fmt, task, stats.audio_seconds if stats else 0.0)
    finally:
        hub.release_upload(stats)
