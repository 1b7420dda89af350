"""One live stream per WebSocket (`/v1/stream`).

Protocol: the client sends a JSON start message, waits for `ready`, then sends binary audio
frames, then `{"type": "end"}`. When no place is free the server first answers
`{"type": "queued", "position": N, "eta_s": ...}` (again whenever the position changes; audio sent
meanwhile is discarded), then `loading` while the start message's model loads (or waits for a
free model slot), then `ready`; then `interim`, `final`, `stats` and `error` events (the same
records as the journal and `--jsonl`), and closes with a code that says why:

    1000 the stream ended (client's end)     1001 the server is shutting down
    1003 unsupported audio format            1007 malformed message or audio
    1008 unauthorized, idle or too long,     1009 frame over the size limit
         or the client reads too slowly      1011 the model failed to load
    1013 no place within --max-wait-s        4405 no such model

`sample_format` "opus" takes Opus in an Ogg or WebM container (a browser's MediaRecorder) instead
of PCM, decoded by PyAV on its own thread. The adapters of other protocols (deepgram.py,
realtime.py) are this same connection with their own start, messages and records
(`StreamConnection`'s hooks). The model never runs on the event loop: the stream's stages are
threads, and each stream is run to its end by `run_stream` (the CLI's run loop) on a thread of its
own, with a `RecordFeed` as its display that moves the events, as records, onto the loop (the
shared sessions of sessions.py run theirs the same way).
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketState

from livecap.asr.base import DecodeOptions
from livecap.asr.registry import Lease, ModelUnavailable
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
from livecap.config import Config
from livecap.messages import SAMPLE_RATE, Caption
from livecap.output.records import RecordDisplay, error_record
from livecap.pipeline.runner import run_stream
from livecap.pipeline.stats import StatsSnapshot
from livecap.pipeline.stream import Stream
from livecap.server.admission import Refused, Told, queued_record
from livecap.server.hub import Hub
from livecap.server.requests import RequestError, decode_options
from livecap.sources.codecs import ALAW, MULAW, ContainerDecoder, downmix, g711
from livecap.sources.push import PushSource

log = logging.getLogger("livecap.server")

SAMPLE_FORMATS: dict[str, tuple[type[np.number], float]] = {
    "s16le": (np.int16, 32768.0),
    "f32le": (np.float32, 1.0),
}
# one byte a sample (telephony; Deepgram and OpenAI Realtime take them)
G711 = {"mulaw": MULAW, "alaw": ALAW}
CONTAINED = "opus"  # Opus in Ogg or WebM, decoded to 16 kHz by PyAV
ANY_CONTAINER = "container"  # any container FFmpeg reads (Deepgram's default: no `encoding`)
CONTAINERS = (CONTAINED, ANY_CONTAINER)
# the browser forms of Deepgram's and OpenAI's auth (app.offered_key)
SUBPROTOCOLS = ("token", "realtime")
MIN_RATE, MAX_RATE = 8_000, 192_000
# what other protocols may set as the end of an utterance
MIN_SILENCE_MS, MAX_SILENCE_MS = 300, 10_000
MAX_PENDING_COMPRESSED = 4 * 1024 * 1024  # compressed bytes waiting to be decoded: minutes of Opus
MAX_TEXT_BYTES = 64 * 1024
MAX_F32 = 8.0  # f32le samples beyond this are not audio
STATS_EVERY_S = 2.0
SEND_CLOSE_WAIT_S = 5.0  # a client that does not read its last events is cut off after this
CLOSE_FOR_STATUS = {404: NO_MODEL, 503: TRY_LATER}  # a refused model's HTTP status as a close code


class Closing(Exception):
    """Ends a connection with a WebSocket close code and a reason the client can read.
    `graceful`: the finals of what was heard are still sent first. Code 1006 (never
    sent) means the client left."""

    def __init__(self, code: int, reason: str, graceful: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.graceful = graceful


@dataclass(frozen=True)
class Start:
    """The client's start message, checked."""

    sample_rate: int
    sample_format: str  # a SAMPLE_FORMATS or G711 key, or one of CONTAINERS
    decode: DecodeOptions
    channels: int = 1  # interleaved PCM is mixed down to mono
    config: Config | None = None  # the stream's own VAD and live settings (Engine.stream)


def start_message(text: str) -> dict[str, Any]:
    """The start message with its audio format checked, or
    `Closing` with the reason it cannot be used."""
    try:
        message = json.loads(text)
    except ValueError:
        raise Closing(INVALID, "the start message is not JSON") from None
    if not isinstance(message, dict) or message.get("type") != "start":
        raise Closing(INVALID, 'the first message must be a JSON object with "type": "start"')
    rate = message.get("sample_rate", 16_000)
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise Closing(
            UNSUPPORTED, f"sample_rate must be an integer from {MIN_RATE} to {MAX_RATE} Hz"
        )
    if message.get("sample_format", "s16le") not in (*SAMPLE_FORMATS, CONTAINED):
        raise Closing(
            UNSUPPORTED,
            'sample_format must be "s16le" or "f32le" (mono PCM) or "opus" (in Ogg or WebM)',
        )
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


def decode_frame(data: bytes, sample_format: str, channels: int = 1) -> np.ndarray:
    """PCM or G.711 bytes as float32 mono samples, or `Closing` for bytes that cannot be audio in
    that format."""
    if sample_format in G711:
        width, samples = 1, None
    else:
        dtype, scale = SAMPLE_FORMATS[sample_format]
        width = np.dtype(dtype).itemsize
    if len(data) % (width * channels):
        whole = f"{channels}-channel frames of " if channels > 1 else ""
        raise Closing(
            INVALID,
            f"an audio frame of {len(data)} bytes is not whole {whole}{sample_format} samples",
        )
    if sample_format in G711:
        samples = g711(data, G711[sample_format])
    else:
        samples = np.frombuffer(data, dtype=dtype).astype(np.float32) / scale
        if dtype is np.float32 and not (
            np.isfinite(samples).all() and np.abs(samples).max(initial=0) <= MAX_F32
        ):
            raise Closing(INVALID, "f32le samples must be finite and within [-1, 1]")
    return downmix(samples, channels)


def known_or_default(hub: Hub, requested: str | None) -> str | None:
    """A model name another protocol's client sent: one livecap knows, or None (the default) for
    the names of that vendor's catalogue (`nova-3`, `gpt-4o-transcribe` ...)."""
    try:
        return hub.models.canonical(requested or None)
    except ModelUnavailable:
        return None


def stream_vad(
    base: Config,
    *,
    silence_ms: float | None = None,
    threshold: float | None = None,
    pad_ms: float | None = None,
    interim: bool,
) -> Config:
    """A stream's own VAD and interim settings from another protocol's turn detection; the
    silence that ends an utterance is at least MIN_SILENCE_MS (Whisper needs whole
    phrases: shorter cuts words)."""
    vad = base.vad
    if silence_ms is not None:
        vad = replace(vad, min_silence_ms=int(min(max(silence_ms, MIN_SILENCE_MS), MAX_SILENCE_MS)))
    if threshold is not None:
        vad = replace(vad, vad_threshold=threshold, vad_neg_threshold=max(0.01, threshold - 0.15))
    if pad_ms is not None:
        vad = replace(vad, speech_pad_ms=int(pad_ms))
    return replace(base, vad=vad, live=replace(base.live, interim=interim))


class AudioInput:
    """A connection's audio bytes into its stream's source: PCM and G.711 decoded at once, Opus in a
    container decoded on its own thread (its failure ends the connection with 1007 through
    `fail`, after the finals of what was decoded)."""

    def __init__(self, start: Start, source: PushSource, fail: Callable[[Closing], None]) -> None:
        self.start, self.source = start, source
        self.bytes_in = 0
        self.decoder: ContainerDecoder | None = None
        if start.sample_format in CONTAINERS:
            self.decoder = ContainerDecoder(
                source.push,
                self._decoded,
                max_pending=MAX_PENDING_COMPRESSED,
                opus_only=start.sample_format == CONTAINED,
                name=f"decode-{source.name}",
            )
        self._fail = fail

    def push(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.decoder is None:
            self.source.push(decode_frame(data, self.start.sample_format, self.start.channels))
        elif not self.decoder.feed(data):
            raise Closing(
                POLICY, "compressed audio arrives faster than it can be decoded", graceful=True
            )

    def finish(self, graceful: bool) -> None:
        """No more audio: the source ends now, or
        (compressed, graceful) once the rest is decoded."""
        if self.decoder is not None:
            self.decoder.close()
            if graceful:
                return
        self.source.end()

    def _decoded(self, error: str | None) -> None:  # the decoder's thread
        if error is not None:
            self._fail(Closing(INVALID, error, graceful=True))
        self.source.end()


class Outbox:
    """Records waiting to be sent to one client (event loop only). A newer interim or stats record
    replaces an unsent one of its kind; finals, errors and the close are kept, up to `max_kept`."""

    REPLACEABLE = ("interim", "stats", "queued")

    def __init__(self, max_kept: int) -> None:
        self._items: deque[dict[str, Any] | Closing] = deque()
        self._kept = 0
        self._max_kept = max_kept
        self._ready = asyncio.Event()
        self.replaced = 0

    def put(self, item: dict[str, Any] | Closing) -> None:
        if isinstance(item, dict) and item["type"] in self.REPLACEABLE:
            stale = next(
                (i for i in self._items if isinstance(i, dict) and i["type"] == item["type"]), None
            )
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


async def close_with(
    websocket: WebSocket,
    code: int,
    reason: str,
    shape: Callable[[str], dict[str, Any]] = error_record,
) -> None:
    """Say why in an error event (in the protocol's `shape`) and in the close frame (reasons are cut
    to the 123 bytes allowed)."""
    try:
        await websocket.send_json(shape(reason))
        await websocket.close(code, reason.encode()[:123].decode(errors="ignore"))
    except Exception:  # the client is already gone: nothing to tell
        pass


Post = Callable[[dict[str, Any]], None]
# a place for the stream, now or after waiting; Refused otherwise
Admit = Callable[[Told], Awaitable[None]]


class RecordFeed(RecordDisplay):
    """A stream's network side, as a `Display` of `run_stream` (which alone tells events apart):
    each event becomes its wire record, handed to `post` on the run thread (`post` moves it onto the
    event loop), with a stats record (plus `extras()`) every STATS_EVERY_S and at the end; then
    `done()`. It never waits on a client."""

    stats_every_s = STATS_EVERY_S

    def __init__(
        self, hub: Hub, post: Post, extras: Callable[[], dict[str, Any]], done: Callable[[], None]
    ) -> None:
        super().__init__()
        self.hub, self.post, self.extras, self.done = hub, post, extras, done

    def emit(self, record: dict[str, Any]) -> None:
        self.post(record)

    def stats_extras(self) -> dict[str, Any]:
        return self.extras()

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        self.hub.record_final(latency["latency"])
        super().final(caption, latency)

    def stop(self) -> None:
        super().stop()
        self.done()


def run_in_thread(stream: Stream, feed: RecordFeed) -> None:
    """Run `stream` to its end (`run_stream`) on its own
    thread: the model never runs on the loop."""
    threading.Thread(
        target=run_stream,
        args=(stream, feed),
        kwargs={"keep": False},
        name=f"run-{stream.stream_id}",
        daemon=True,
    ).start()


class StreamConnection:
    """One admitted connection: its model, its stream, its run thread and its sender. `tap`, when
    given, also receives every record of the stream on the event loop (a shared session's viewers);
    `model`, when given, is the only model its start message may name (a session's).

    Another protocol over the same connection overrides the hooks: `begin` (what the stream is, its
    model leased), `ready`, `flowing`, `on_message` (each client message once audio flows), `wire`
    (a record as the messages its clients read), `farewell` (sent before the close) and
    `error_message`."""

    max_text = MAX_TEXT_BYTES  # one text message
    vad_events = False  # ask the stream for VadEvents (protocols that report speech)

    def __init__(
        self,
        websocket: WebSocket,
        hub: Hub,
        admit: Admit,
        tap: Post | None = None,
        model: str | None = None,
    ) -> None:
        self.ws = websocket
        self.hub = hub
        self.admit = admit
        self.admitted = False
        self.discarded_bytes = 0  # audio sent while waiting for a place (not transcribed)
        self.tap = tap
        self.model = model
        self.lease: Lease | None = None
        self.ending: Closing | None = None
        self.settings = hub.settings
        self.loop = asyncio.get_running_loop()
        self.outbox = Outbox(self.settings.max_unsent_finals)
        self.run_done = asyncio.Event()
        self.source: PushSource | None = None
        self.audio: AudioInput | None = None
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

    async def begin(self) -> Start:
        """What the stream is: here the client's start message, its model leased (loaded first if
        needed: the client is told); `Closing` when it cannot be served."""
        message = start_message(await self._receive_text_first())
        requested = message.get("model")
        if self.model is not None and requested not in (None, self.model):
            raise Closing(
                POLICY,
                f"this session runs model {self.model!r}: its publisher cannot choose another",
            )
        await self._wait_in_line()
        self.admitted = True
        self.lease = await self.lease_model(self.model or requested, tell=True)
        return checked_start(message, self.lease.multilingual, self.lease.name)

    async def lease_model(self, requested: object, tell: bool) -> Lease:
        """The model for this stream, loaded first if needed (`tell`: with `loading` events)."""
        states: asyncio.Queue[str] = asyncio.Queue()
        leasing = asyncio.ensure_future(
            self.hub.lease(
                requested, "stream", lambda state: self._call_soon(states.put_nowait, state)
            )
        )
        try:
            while not leasing.done():
                told = asyncio.ensure_future(states.get())
                await asyncio.wait({leasing, told}, return_when=asyncio.FIRST_COMPLETED)
                if not told.done():
                    told.cancel()
                    break
                if tell:
                    await self.ws.send_json(
                        {"type": "loading", "model": requested, "state": told.result()}
                    )
            lease = await leasing
            while tell and not states.empty():  # told just before the lease came
                await self.ws.send_json(
                    {"type": "loading", "model": requested, "state": states.get_nowait()}
                )
        except RequestError as refused:
            raise Closing(CLOSE_FOR_STATUS.get(refused.status, INTERNAL), refused.message) from None
        finally:
            leasing.cancel()  # the client left while it loaded: the lease is let go when it comes
        return lease

    async def _run(self) -> None:
        try:
            start = await self.begin()
        except Closing as closing:
            if closing.code != ABNORMAL:
                await close_with(self.ws, closing.code, closing.reason, self.error_message)
            return
        except Exception:  # the client left while its model loaded (or a bug): nothing runs yet
            log.debug("a stream's client left before it started", exc_info=True)
            # if it is still there
            await close_with(self.ws, INTERNAL, "internal server error", self.error_message)
            return
        assert self.lease is not None
        rate = SAMPLE_RATE if start.sample_format in CONTAINERS else start.sample_rate
        self.source = PushSource(rate, name=f"ws:{self.ws.client.host if self.ws.client else '?'}")
        self.stream = self.lease.stream(
            self.source, live=True, decode=start.decode, converter=self.source.converter(),
            config=start.config, vad_events=self.vad_events,
        )
        self.hub.measure(self.stream)
        self.audio = AudioInput(
            start, self.source, lambda closing: self._call_soon(self.end_with, closing)
        )
        try:
            for message in self.ready(start):
                await self.ws.send_json(message)
        except Exception:  # the client left before its stream started: nothing runs yet
            self.audio.finish(graceful=False)
            return
        self.stream.start()
        self.flowing()
        feed = RecordFeed(self.hub, self._post_threadsafe, self._stats_extras, self._run_done)
        run_in_thread(self.stream, feed)
        sender = asyncio.create_task(self._send_loop())
        try:
            ending = await self._receive_audio()
        except Closing as closing:
            ending = closing
        except Exception:
            # a bug must not leave the stream running nor show a traceback to the client
            log.exception("live stream %s failed", self.stream.stream_id)
            ending = Closing(INTERNAL, "internal server error")
        self.ending = ending
        if not ending.graceful:
            self.stream.pool.withdraw(self.stream.stream_id)  # nobody will read them
        self.audio.finish(ending.graceful)
        try:
            await asyncio.wait_for(
                self.run_done.wait(), self.settings.drain_s if ending.code == GOING_AWAY else None
            )
        except asyncio.TimeoutError:
            self.stream.pool.withdraw(self.stream.stream_id)
        if ending.code == ABNORMAL:
            sender.cancel()
        else:
            if ending.code != NORMAL:
                self._post(error_record(ending.reason))
            for message in self.farewell(ending):
                self._post(Native(message))
            self._post(ending)
            try:
                await asyncio.wait_for(sender, SEND_CLOSE_WAIT_S)
            except Exception:  # the client left or stopped reading: it is closed anyway
                sender.cancel()
        await self.run_done.wait()  # the stream has ended: its figures are final

    def stats_snapshot(self) -> StatsSnapshot | None:
        return self.stream.stats_snapshot() if self.stream is not None else None

    async def _wait_in_line(self) -> None:
        """Get a place (`admit`), telling the client its position in line as it changes; a client
        that leaves or ends meanwhile gives up its place. Audio sent while waiting is discarded."""
        notices: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        entering = asyncio.create_task(
            self.admit(lambda place, eta: notices.put_nowait(queued_record(place, eta)))
        )
        draining = asyncio.create_task(self.hub.draining.wait())
        receiving: asyncio.Task | None = None
        noticing: asyncio.Task | None = None
        try:
            # a free place is taken at once: nothing to wait for, nothing received meanwhile
            await asyncio.sleep(0)
            while not entering.done():
                receiving = receiving or asyncio.create_task(self.ws.receive())
                noticing = noticing or asyncio.create_task(notices.get())
                await asyncio.wait(
                    {entering, receiving, noticing, draining}, return_when=asyncio.FIRST_COMPLETED
                )
                if noticing.done():
                    await self._send_or_leave(noticing.result())
                    noticing = None
                if draining.done() and not entering.done():
                    raise Closing(GOING_AWAY, "server shutting down")
                if receiving.done():  # even as the place came: it was sent while waiting
                    self._while_waiting(receiving.result())
                    receiving = None
            entering.result()
        except Refused as refused:
            raise Closing(TRY_LATER, str(refused)) from None
        finally:
            for task in (entering, draining, receiving, noticing):
                if task is not None and not task.done():
                    task.cancel()

    async def _send_or_leave(self, record: dict[str, Any]) -> None:
        try:
            await self.ws.send_json(record)
        except Exception:  # the client left while waiting
            raise Closing(ABNORMAL, "client disconnected") from None

    def _while_waiting(self, message: dict[str, Any]) -> None:
        """A message that came while waiting for a place:
        audio is discarded, an end leaves the line."""
        if message["type"] == "websocket.disconnect":
            raise Closing(ABNORMAL, "client disconnected")
        data = message.get("bytes")
        if data is not None:
            if len(data) > self.settings.max_frame_bytes:
                raise Closing(
                    TOO_BIG,
                    f"frame of {len(data)} bytes: the limit is {self.settings.max_frame_bytes}",
                )
            self.discarded_bytes += len(data)
        elif _is_end(message.get("text") or ""):
            raise Closing(NORMAL, "the client ended the stream while waiting for a place")
        else:
            raise Closing(INVALID, 'text after the start message must be {"type": "end"}')

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
                    POLICY,
                    f"the stream reached its limit of {self.settings.max_stream_s:g} s",
                    graceful=True,
                ) from None
            raise Closing(POLICY, f"idle: nothing received for {idle:g} s", graceful=True) from None
        if message["type"] == "websocket.disconnect":
            raise Closing(ABNORMAL, "client disconnected")
        return message

    async def _receive_text_first(self) -> str:
        message = await self._receive(float("inf"))  # only the idle timeout bounds the wait
        if message.get("text") is None:
            raise Closing(
                UNSUPPORTED, "the first message must be the JSON start message, not audio"
            )
        if len(message["text"]) > MAX_TEXT_BYTES:
            raise Closing(TOO_BIG, f"a text message is limited to {MAX_TEXT_BYTES} bytes")
        return message["text"]

    async def _receive_audio(self) -> Closing:
        """Take messages until the client ends, leaves, breaks a rule or the server shuts down; what
        ended it comes back (or is raised) as the close to send."""
        deadline = time.monotonic() + self.settings.max_stream_s
        draining = asyncio.create_task(self.hub.draining.wait())
        stopping = asyncio.create_task(self._stop_now.wait())
        try:
            while True:
                receiving = asyncio.create_task(self._receive(deadline))
                await asyncio.wait(
                    {receiving, draining, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if draining.done() or stopping.done():
                    receiving.cancel()
                    return self.stop_reason or Closing(
                        GOING_AWAY, "server shutting down", graceful=True
                    )
                message = receiving.result()
                self._check_size(message)
                ending = self.on_message(message)
                if ending is not None:
                    return ending
        finally:
            draining.cancel()
            stopping.cancel()

    def _check_size(self, message: dict[str, Any]) -> None:
        data, text = message.get("bytes"), message.get("text")
        if data is not None and len(data) > self.settings.max_frame_bytes:
            raise Closing(
                TOO_BIG, f"frame of {len(data)} bytes: the limit is {self.settings.max_frame_bytes}"
            )
        if text is not None and len(text) > self.max_text:
            raise Closing(
                TOO_BIG, f"a text message of {len(text)} bytes: the limit is {self.max_text}"
            )

    # -- the hooks: livecap's own protocol -------------------------------------------------------

    def ready(self, start: Start) -> list[dict[str, Any]]:
        """Sent once the stream exists, before any event."""
        assert self.stream is not None
        assert self.lease is not None
        return [
            {
                "type": "ready",
                "stream_id": self.stream.stream_id,
                "model": self.lease.name,
                "sample_rate": start.sample_rate,
                "sample_format": start.sample_format,
                "max_frame_bytes": self.settings.max_frame_bytes,
                "discarded_bytes": self.discarded_bytes,
            }
        ]

    def take_place_now(self) -> None:
        """A place without waiting, for a protocol that has
        no `queued` message: 1013 when none is free."""
        if not self.hub.streams_line.take_now():
            self.hub.refused += 1
            raise Closing(TRY_LATER, "at capacity (streams): try again later")
        self.admitted = True

    def flowing(self) -> None:
        """The stream has started: audio pushed from here on is heard."""

    def on_message(self, message: dict[str, Any]) -> Closing | None:
        """One client message once audio flows (size checked); a `Closing` ends the connection."""
        assert self.audio is not None
        if message.get("bytes") is not None:
            self.audio.push(message["bytes"])
            return None
        if _is_end(message.get("text") or ""):
            return Closing(NORMAL, "end of stream", graceful=True)
        raise Closing(INVALID, 'text after the start message must be {"type": "end"}')

    def wire(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """A stream record as the messages this protocol's clients read."""
        return [record]

    def farewell(self, ending: Closing) -> list[dict[str, Any]]:
        """Messages sent after the last record, before the close frame."""
        return []

    error_message = staticmethod(error_record)  # how this protocol says why (before a close)

    def end_with(self, closing: Closing) -> None:
        """End the connection now, from outside its receiver
        (a client too slow, a session stopped)."""
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

    def post_native(self, message: dict[str, Any]) -> None:
        """A message of this protocol's own (an answer to a
        client's message), in order with the records."""
        self._post(Native(message))

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
                    await self.ws.close(
                        item.code, item.reason.encode()[:123].decode(errors="ignore")
                    )
                return
            for message in [item] if isinstance(item, Native) else self.wire(item):
                await self.ws.send_json(message)


class Native(dict):
    """A message already in the connection's protocol: sent as it is, not through `wire`."""


def _is_end(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "end"


async def accept(websocket: WebSocket) -> None:
    """Accept, choosing the subprotocol a browser offered to carry its
    key (it must be echoed, or the browser drops the connection)."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    await websocket.accept(subprotocol=next((p for p in offered if p in SUBPROTOCOLS), None))


async def serve_stream(
    websocket: WebSocket, hub: Hub, kind: type[StreamConnection] | None = None
) -> None:
    """Admit a connection (or close it with the reason) and run it as `kind` (livecap's own protocol
    by default, or an adapter)."""
    kind = kind or StreamConnection
    await accept(websocket)
    if hub.draining.is_set():
        await close_with(websocket, GOING_AWAY, "server shutting down", kind.error_message)
        return
    connection = kind(websocket, hub, hub.enter_stream)
    task = asyncio.current_task()
    assert task is not None
    hub.track(task)
    try:
        await connection.run()
    except Exception:  # a bug here must not leak a traceback to the client, nor a slot
        log.exception("live stream failed")
        await close_with(websocket, INTERNAL, "internal server error")
    finally:
        if connection.admitted:
            hub.release_stream(connection.stats_snapshot(), connection.stream)
