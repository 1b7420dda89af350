"""One live stream per WebSocket (`/v1/stream`).

Protocol: the client sends a JSON start message, then binary audio frames, then `{"type": "end"}`;
the server answers `loading` while the start message's model loads (or waits for a free model
slot), `ready`, then `interim`, `final`, `stats` and `error` events (the same records as the
journal and `--jsonl`), and closes with a code that says why:

    1000 the stream ended (client's end)     1001 the server is shutting down
    1003 unsupported audio format            1007 malformed message or audio
    1008 unauthorized, idle or too long,     1009 frame over the size limit
         or the client reads too slowly      1011 the model failed to load
    1013 at capacity: try again later        4405 no such model

The model never runs on the event loop: the stream's stages are threads, and each stream is run
to its end by `run_stream` (the CLI's run loop) on a thread of its own, with a `RecordFeed` as its
display that moves the events, as records, onto the loop (the shared sessions of sessions.py run
theirs the same way).
What waits to be sent is bounded: a newer interim (or stats) replaces an unsent one, finals are
never dropped, and a client that leaves too many unsent is disconnected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketState

from livecap.asr.base import DecodeOptions
from livecap.asr.registry import Lease
from livecap.closecodes import (
    ABNORMAL,
    GOING_AWAY,
    INTERNAL,
    INVALID,
    NO_MODEL,
    NORMAL,
    POLICY,
    TOO_BIG,
    TRY_LATER,
    UNSUPPORTED,
)
from livecap.messages import Caption, InterimCaption
from livecap.output.records import error_record, final_record, interim_record, stats_record
from livecap.pipeline.runner import Display, run_stream
from livecap.pipeline.stats import StatsSnapshot
from livecap.pipeline.stream import Stream
from livecap.server.hub import Hub
from livecap.server.requests import RequestError, decode_options
from livecap.sources.push import PushSource

log = logging.getLogger("livecap.server")

SAMPLE_FORMATS: dict[str, tuple[type[np.number], float]] = {"s16le": (np.int16, 32768.0), "f32le": (np.float32, 1.0)}
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_TEXT_BYTES = 64 * 1024
MAX_F32 = 8.0  # f32le samples beyond this are not audio
STATS_EVERY_S = 2.0
SEND_CLOSE_WAIT_S = 5.0  # a client that does not read its last events is cut off after this
CLOSE_FOR_STATUS = {404: NO_MODEL, 503: TRY_LATER}  # a refused model's HTTP status as a close code


class Closing(Exception):
    """Ends a connection with a WebSocket close code and a reason the client can read. `graceful`:
    the finals of what was heard are still sent first. Code 1006 (never sent) means the client left."""

    def __init__(self, code: int, reason: str, graceful: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.graceful = graceful


@dataclass(frozen=True)
class Start:
    """The client's start message, checked."""

    sample_rate: int
    sample_format: str
    decode: DecodeOptions


def start_message(text: str) -> dict[str, Any]:
    """The start message with its audio format checked, or `Closing` with the reason it cannot be used."""
    try:
        message = json.loads(text)
    except ValueError:
        raise Closing(INVALID, "the start message is not JSON") from None
    if not isinstance(message, dict) or message.get("type") != "start":
        raise Closing(INVALID, 'the first message must be a JSON object with "type": "start"')
    rate = message.get("sample_rate", 16_000)
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise Closing(UNSUPPORTED, f"sample_rate must be an integer from {MIN_RATE} to {MAX_RATE} Hz")
    if message.get("sample_format", "s16le") not in SAMPLE_FORMATS:
        raise Closing(UNSUPPORTED, 'sample_format must be "s16le" or "f32le" (mono PCM)')
    return message


def checked_start(message: dict[str, Any], multilingual: bool, model: str) -> Start:
    """A start message's decoding checked against the model that will run it."""
    try:
        decode = decode_options(message, multilingual=multilingual, model=model)
    except RequestError as error:
        raise Closing(INVALID, str(error)) from None
    return Start(message.get("sample_rate", 16_000), message.get("sample_format", "s16le"), decode)


def parse_start(text: str, multilingual: bool, model: str) -> Start:
    """The start message, or `Closing` with the reason it cannot be used."""
    return checked_start(start_message(text), multilingual, model)


def decode_frame(data: bytes, sample_format: str) -> np.ndarray:
    """PCM bytes as float32 samples, or `Closing` for bytes that cannot be audio in that format."""
    dtype, scale = SAMPLE_FORMATS[sample_format]
    width = np.dtype(dtype).itemsize
    if len(data) % width:
        raise Closing(INVALID, f"an audio frame of {len(data)} bytes is not whole {sample_format} samples")
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32) / scale
    if dtype is np.float32 and not (np.isfinite(samples).all() and np.abs(samples).max(initial=0) <= MAX_F32):
        raise Closing(INVALID, "f32le samples must be finite and within [-1, 1]")
    return samples


class Outbox:
    """Records waiting to be sent to one client (event loop only). A newer interim or stats record
    replaces an unsent one of its kind; finals, errors and the close are kept, up to `max_kept`."""

    REPLACEABLE = ("interim", "stats")

    def __init__(self, max_kept: int) -> None:
        self._items: deque[dict[str, Any] | Closing] = deque()
        self._kept = 0
        self._max_kept = max_kept
        self._ready = asyncio.Event()
        self.replaced = 0

    def put(self, item: dict[str, Any] | Closing) -> None:
        if isinstance(item, dict) and item["type"] in self.REPLACEABLE:
            stale = next((i for i in self._items if isinstance(i, dict) and i["type"] == item["type"]), None)
            if stale is not None:
                self._items.remove(stale)
                self.replaced += 1
        else:
            if self._kept >= self._max_kept:
                raise Closing(POLICY, f"the client reads too slowly: {self._kept} events unsent")
            self._kept += 1
        self._items.append(item)
        self._ready.set()

    def cut(self, closing: Closing) -> None:
        """Drop what is unsent and close: a reader this far behind gets only the reason."""
        self._items.clear()
        self._items.extend((error_record(closing.reason), closing))
        self._kept = 2
        self._ready.set()

    async def get(self) -> dict[str, Any] | Closing:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if not (isinstance(item, dict) and item["type"] in self.REPLACEABLE):
            self._kept -= 1
        return item


async def close_with(websocket: WebSocket, code: int, reason: str) -> None:
    """Say why in an error event and in the close frame (reasons are cut to the 123 bytes allowed)."""
    try:
        await websocket.send_json(error_record(reason))
        await websocket.close(code, reason.encode()[:123].decode(errors="ignore"))
    except Exception:  # the client is already gone: nothing to tell
        pass


Post = Callable[[dict[str, Any]], None]


class RecordFeed(Display):
    """A stream's network side, as a `Display` of `run_stream` (which alone tells events apart):
    each event becomes its wire record, handed to `post` on the run thread (`post` moves it onto the
    event loop), with a stats record (plus `extras()`) every STATS_EVERY_S and at the end; then
    `done()`. It never waits on a client."""

    def __init__(
        self, hub: Hub, post: Post, extras: Callable[[], dict[str, Any]], done: Callable[[], None]
    ) -> None:
        self.hub, self.post, self.extras, self.done = hub, post, extras, done
        self._latest: StatsSnapshot | None = None
        self._sent: StatsSnapshot | None = None
        self._sent_at = time.monotonic()

    def start(self) -> None:
        """Nothing to open: the connection is up before its stream runs."""

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        self.hub.record_final(latency["latency"])
        self.post(final_record(caption, latency))

    def interim(self, event: InterimCaption) -> None:
        self.post(interim_record(event))

    def error(self, message: str) -> None:
        self.post(error_record(message))

    def tick(self, stats: StatsSnapshot) -> None:
        self._latest = stats
        if time.monotonic() - self._sent_at >= STATS_EVERY_S:
            self._send_stats()

    def stop(self) -> None:
        if self._latest is not None and self._latest is not self._sent:
            self._send_stats()  # the final figures, once
        self.done()

    def _send_stats(self) -> None:
        assert self._latest is not None
        self._sent, self._sent_at = self._latest, time.monotonic()
        self.post({**stats_record(self._latest), **self.extras()})


def run_in_thread(stream: Stream, feed: RecordFeed) -> None:
    """Run `stream` to its end (`run_stream`) on its own thread: the model never runs on the loop."""
    threading.Thread(
        target=run_stream, args=(stream, feed), kwargs={"keep": False}, name=f"run-{stream.stream_id}",
        daemon=True,
    ).start()


class StreamConnection:
    """One admitted connection: its model, its stream, its run thread and its sender. `tap`, when
    given, also receives every record of the stream on the event loop (a shared session's viewers);
    `model`, when given, is the only model its start message may name (a session's)."""

    def __init__(self, websocket: WebSocket, hub: Hub, tap: Post | None = None, model: str | None = None) -> None:
        self.ws = websocket
        self.hub = hub
        self.tap = tap
        self.model = model
        self.lease: Lease | None = None
        self.ending: Closing | None = None
        self.settings = hub.settings
        self.loop = asyncio.get_running_loop()
        self.outbox = Outbox(self.settings.max_unsent_finals)
        self.run_done = asyncio.Event()
        self.source: PushSource | None = None
        self.stream: Stream | None = None
        self.stop_reason: Closing | None = None  # set by `end_with`
        self._stop_now = asyncio.Event()

    async def run(self) -> None:
        """The connection from its start message to its close; its model is let go at the end."""
        try:
            await self._run()
        finally:
            if self.lease is not None:
                self.lease.release()

    async def _start(self) -> Start:
        """The start message, its model leased (loaded first if needed: the client is told)."""
        message = start_message(await self._receive_text_first())
        requested = message.get("model")
        if self.model is not None and requested not in (None, self.model):
            raise Closing(1008, f"this session runs model {self.model!r}: its publisher cannot choose another")
        states: asyncio.Queue[str] = asyncio.Queue()
        leasing = asyncio.ensure_future(
            self.hub.lease(self.model or requested, "stream", lambda state: self._call_soon(states.put_nowait, state))
        )
        try:
            while not leasing.done():
                told = asyncio.ensure_future(states.get())
                await asyncio.wait({leasing, told}, return_when=asyncio.FIRST_COMPLETED)
                if not told.done():
                    told.cancel()
                    break
                await self.ws.send_json({"type": "loading", "model": requested, "state": told.result()})
            self.lease = await leasing
            while not states.empty():  # told just before the lease came
                await self.ws.send_json({"type": "loading", "model": requested, "state": states.get_nowait()})
        except RequestError as refused:
            raise Closing(CLOSE_FOR_STATUS.get(refused.status, INTERNAL), refused.message) from None
        finally:
            leasing.cancel()  # the client left while it loaded: the lease is let go when it comes
        return checked_start(message, self.lease.multilingual, self.lease.name)

    async def _run(self) -> None:
        try:
            start = await self._start()
        except Closing as closing:
            await close_with(self.ws, closing.code, closing.reason)
            return
        except Exception:  # the client left while its model loaded: nothing runs yet
            log.debug("a stream's client left before it started", exc_info=True)
            return
        assert self.lease is not None
        self.source = PushSource(start.sample_rate, name=f"ws:{self.ws.client.host if self.ws.client else '?'}")
        self.stream = self.lease.stream(
            self.source, live=True, decode=start.decode, converter=self.source.converter()
        )
        try:
            await self.ws.send_json(
                {
                    "type": "ready",
                    "stream_id": self.stream.stream_id,
                    "model": self.lease.name,
                    "sample_rate": start.sample_rate,
                    "sample_format": start.sample_format,
                    "max_frame_bytes": self.settings.max_frame_bytes,
                }
            )
        except Exception:  # the client left before its stream started: nothing runs yet
            return
        self.stream.start()
        feed = RecordFeed(self.hub, self._post_threadsafe, self._stats_extras, self._run_done)
        run_in_thread(self.stream, feed)
        sender = asyncio.create_task(self._send_loop())
        try:
            ending = await self._receive_audio(start.sample_format)
        except Closing as closing:
            ending = closing
        except Exception:  # a bug must not leave the stream running nor show a traceback to the client
            log.exception("live stream %s failed", self.stream.stream_id)
            ending = Closing(INTERNAL, "internal server error")
        self.ending = ending
        if not ending.graceful:
            self.stream.pool.cancel_finals(self.stream.stream_id)  # nobody will read them
        self.source.end()
        try:
            await asyncio.wait_for(self.run_done.wait(), self.settings.drain_s if ending.code == GOING_AWAY else None)
        except asyncio.TimeoutError:
            self.stream.pool.cancel_finals(self.stream.stream_id)
        if ending.code == ABNORMAL:
            sender.cancel()
        else:
            if ending.code != NORMAL:
                self._post(error_record(ending.reason))
            self._post(ending)
            try:
                await asyncio.wait_for(sender, SEND_CLOSE_WAIT_S)
            except Exception:  # the client left or stopped reading: it is closed anyway
                sender.cancel()
        await self.run_done.wait()  # the stream has ended: its figures are final

    def stats_snapshot(self) -> StatsSnapshot | None:
        return self.stream.stats_snapshot() if self.stream is not None else None

    # -- receiving (event loop) ----------------------------------------------------------------

    async def _receive(self, deadline: float) -> dict[str, Any]:
        """The next message; the close to send when the client is idle, past `deadline` or gone."""
        idle = self.settings.idle_timeout_s
        left = deadline - time.monotonic()
        try:
            message = await asyncio.wait_for(self.ws.receive(), min(idle, left))
        except asyncio.TimeoutError:
            if left < idle:  # the stream's limit came first
                raise Closing(
                    POLICY, f"the stream reached its limit of {self.settings.max_stream_s:g} s", graceful=True
                ) from None
            raise Closing(POLICY, f"idle: nothing received for {idle:g} s", graceful=True) from None
        if message["type"] == "websocket.disconnect":
            raise Closing(ABNORMAL, "client disconnected")
        return message

    async def _receive_text_first(self) -> str:
        message = await self._receive(float("inf"))  # only the idle timeout bounds the wait
        if message.get("text") is None:
            raise Closing(UNSUPPORTED, "the first message must be the JSON start message, not audio")
        if len(message["text"]) > MAX_TEXT_BYTES:
            raise Closing(TOO_BIG, f"a text message is limited to {MAX_TEXT_BYTES} bytes")
        return message["text"]

    async def _receive_audio(self, sample_format: str) -> Closing:
        """Take audio until the client ends, leaves, breaks a rule or the server shuts down; what
        ended it comes back (or is raised) as the close to send."""
        assert self.source is not None
        deadline = time.monotonic() + self.settings.max_stream_s
        draining = asyncio.create_task(self.hub.draining.wait())
        stopping = asyncio.create_task(self._stop_now.wait())
        try:
            while True:
                receiving = asyncio.create_task(self._receive(deadline))
                await asyncio.wait({receiving, draining, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if draining.done() or stopping.done():
                    receiving.cancel()
                    return self.stop_reason or Closing(GOING_AWAY, "server shutting down", graceful=True)
                message = receiving.result()
                data = message.get("bytes")
                if data is not None:
                    if len(data) > self.settings.max_frame_bytes:
                        limit = self.settings.max_frame_bytes
                        raise Closing(TOO_BIG, f"frame of {len(data)} bytes: the limit is {limit}")
                    self.source.push(decode_frame(data, sample_format))
                elif _is_end(message.get("text") or ""):
                    return Closing(NORMAL, "end of stream", graceful=True)
                else:
                    raise Closing(INVALID, 'text after the start message must be {"type": "end"}')
        finally:
            draining.cancel()
            stopping.cancel()

    def end_with(self, closing: Closing) -> None:
        """End the connection now, from outside its receiver (a client too slow, a session stopped)."""
        self.stop_reason = self.stop_reason or closing
        self._stop_now.set()

    # -- the run thread and the sender (event loop) ---------------------------------------------

    def _run_done(self) -> None:
        self._call_soon(self.run_done.set)

    def _stats_extras(self) -> dict[str, Any]:
        return {"interims_unsent": self.outbox.replaced}

    def _call_soon(self, callback: Any, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the server is gone
            pass

    def _post_threadsafe(self, record: dict[str, Any]) -> None:
        self._call_soon(self._deliver, record)

    def _deliver(self, record: dict[str, Any]) -> None:
        self._post(record)
        if self.tap is not None:
            self.tap(record)

    def _post(self, item: dict[str, Any] | Closing) -> None:
        try:
            self.outbox.put(item)
        except Closing as closing:  # too many unsent finals: the receiver ends the connection
            self.end_with(closing)

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, Closing):
                if self.ws.application_state == WebSocketState.CONNECTED:
                    await self.ws.close(item.code, item.reason.encode()[:123].decode(errors="ignore"))
                return
            await self.ws.send_json(item)


def _is_end(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "end"


async def serve_stream(websocket: WebSocket, hub: Hub) -> None:
    """Admit a connection (or close it with the reason) and run its stream."""
    await websocket.accept()
    if hub.draining.is_set():
        await close_with(websocket, GOING_AWAY, "server shutting down")
        return
    if not hub.admit_stream():
        await close_with(websocket, TRY_LATER, f"server at capacity ({hub.max_streams} streams): try again later")
        return
    connection = StreamConnection(websocket, hub)
    task = asyncio.current_task()
    assert task is not None
    hub.track(task)
    try:
        await connection.run()
    except Exception:  # a bug here must not leak a traceback to the client, nor a slot
        log.exception("live stream failed")
        await close_with(websocket, INTERNAL, "internal server error")
    finally:
        hub.release_stream(connection.stats_snapshot())
