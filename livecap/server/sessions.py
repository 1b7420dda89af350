"""Shared sessions: one source captioned once, watched by any number of viewers.

A session's source is a media file from the library replayed at 1x (a live source), or a publisher
sending audio over `WS /v1/sessions/{id}/publish` with the protocol of `/v1/stream`. Its stream runs
once; its records go to a `Fanout`, which keeps the finals so far (bounded) for late joiners and
hands every record to each viewer's own bounded `Outbox`. Publishing never waits on a viewer: a
viewer that leaves `viewer_buffer` events unsent is cut off with a reason (it may rejoin and gets
the history again), and uvicorn's pings close a connection that stops answering.

Viewers (`WS /v1/sessions/{id}/captions`) get `ready` (the session), the finals so far, then the
live events of `/v1/stream`; when the session ends, an `end` event with the reason and a close:
1000, or 1001 when the server shuts down. Sessions take a slot of the hub's stream capacity.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocket

from livecap.asr.base import DecodeOptions
from livecap.asr.registry import Lease
from livecap.closecodes import (
    ABNORMAL,
    GOING_AWAY,
    INTERNAL,
    NO_SESSION,
    NORMAL,
    POLICY,
    REJOIN,
    TRY_LATER,
)
from livecap.errors import LivecapError
from livecap.pipeline.stream import Stream
from livecap.server.hub import Hub
from livecap.server.live import (
    Closing,
    Outbox,
    RecordFeed,
    StreamConnection,
    close_with,
    run_in_thread,
)
from livecap.server.media import MediaLibrary
from livecap.server.requests import RequestError, decode_options
from livecap.sources.file import FileSource

log = logging.getLogger("livecap.server")



class Record(dict):
    """A record and its JSON, encoded once for every viewer."""

    text: str


def encoded(record: dict[str, Any]) -> Record:
    """A record with its JSON text encoded once for every viewer."""
    out = Record(record)
    out.text = json.dumps(record)
    return out


class Fanout:
    """A session's history and viewers (event loop only)."""

    def __init__(self, history: int) -> None:
        self.history: deque[Record] = deque(maxlen=history)
        self.finals = 0
        self.viewers: set[Outbox] = set()
        self.joined = 0
        self.dropped = 0
        self.ended: tuple[int, str] | None = None

    def publish(self, record: dict[str, Any]) -> None:
        """Hand a record to every viewer; a viewer too far behind is cut off, never waited for."""
        item = encoded(record)
        if record["type"] == "final":
            self.history.append(item)
            self.finals += 1
        for viewer in list(self.viewers):
            try:
                viewer.put(item)
            except Closing as closing:
                self.viewers.discard(viewer)
                self.dropped += 1
                viewer.cut(Closing(REJOIN, f"viewer too far behind ({closing.reason}): rejoin to catch up"))

    def join(self, viewer: Outbox) -> list[Record]:
        """Subscribe and return the finals so far (nothing can come in between: one loop)."""
        self.joined += 1
        if self.ended is not None:
            self._end_one(viewer, *self.ended)
        else:
            self.viewers.add(viewer)
        return list(self.history)

    def leave(self, viewer: Outbox) -> None:
        self.viewers.discard(viewer)

    def end(self, code: int, reason: str) -> None:
        self.ended = (code, reason)
        for viewer in self.viewers:
            self._end_one(viewer, code, reason)
        self.viewers.clear()

    @staticmethod
    def _end_one(viewer: Outbox, code: int, reason: str) -> None:
        try:
            viewer.put(encoded({"type": "end", "reason": reason}))
            viewer.put(Closing(code, reason))
        except Closing:  # this viewer is far behind anyway: it gets the reason
            viewer.cut(Closing(code, reason))


class SharedSession:
    """One captioned source and its viewers; `run()` is its task. It holds its model (`lease`)
    from its creation to its end, so the model stays loaded while it waits for its publisher."""

    def __init__(
        self, hub: Hub, kind: str, decode: DecodeOptions, media: str | None, translate_to: str | None, lease: Lease
    ) -> None:
        self.id = secrets.token_hex(6)
        self.hub = hub
        self.lease = lease
        self.kind = kind  # "media" or "publish"
        self.media = media
        self.decode = decode
        self.translate_to = translate_to
        self.created = time.time()
        self.state = "starting" if kind == "media" else "waiting"
        self.end_reason: str | None = None
        self.fanout = Fanout(hub.settings.history_finals)
        self._stream: Stream | None = None  # a media session's (a publish session's is its publisher's)
        self.duration: float | None = None
        self.publisher: StreamConnection | None = None
        self.publisher_came = asyncio.Event()
        self.publisher_left = asyncio.Event()
        self.stopping = asyncio.Event()
        self.task: asyncio.Task | None = None

    @property
    def stream(self) -> Stream | None:
        return self.publisher.stream if self.publisher is not None else self._stream

    def describe(self) -> dict[str, Any]:
        """What GET /v1/sessions shows: state, source, viewers, position and latency."""
        snap = self.stream.stats_snapshot() if self.stream is not None else None
        return {
            "id": self.id, "state": self.state, "source": self.kind, "media": self.media,
            "model": self.lease.name, "language": (self.stream.decode if self.stream else self.decode).language,
            "translate_to": self.translate_to,
            "created": round(self.created, 3), "end_reason": self.end_reason,
            "viewers": len(self.fanout.viewers), "viewers_total": self.fanout.joined,
            "viewers_dropped": self.fanout.dropped, "finals": self.fanout.finals,
            "position": round(self.stream.clock, 3) if self.stream is not None else 0.0,
            "duration": self.duration,
            "final_latency_p50": snap.final_p50 if snap else None,
            "final_latency_p95": snap.final_p95 if snap else None,
            "interim_latency_p50": snap.interim_p50 if snap else None,
            "behind_s": round(snap.behind_seconds, 3) if snap else None,
            "dropped_audio_s": round(snap.dropped_seconds, 3) if snap else None,
        }

    def stats_extras(self) -> dict[str, Any]:
        """What a media session's stats records add (from its run thread: a length read is safe)."""
        return {"viewers": len(self.fanout.viewers)}

    async def run(self, library: MediaLibrary) -> None:
        """The session from start to end; always ends its viewers and frees its slot."""
        code, reason = INTERNAL, "internal server error"
        try:
            code, reason = await (self._run_media(library) if self.kind == "media" else self._run_publish())
        except RequestError as error:
            reason = error.message
        except Exception:
            log.exception("session %s failed", self.id)
        finally:
            self.state = "ended"
            self.end_reason = reason
            self.fanout.end(code, reason)
            if self.media is not None:
                library.release(self.media)
            self.hub.release_stream(self.stream.stats_snapshot() if self.stream is not None else None)
            self.lease.release()

    async def _until(self, *events: asyncio.Event, timeout: float | None = None) -> None:
        waits = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _run_media(self, library: MediaLibrary) -> tuple[int, str]:
        path = library.path(self.media or "")
        try:
            source = await asyncio.to_thread(FileSource, path, True)
        except LivecapError as error:
            raise RequestError(str(error).replace(str(path), "the media file")) from None
        self.duration = source.duration
        stream = self._stream = self.lease.stream(source, live=True, decode=self.decode)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def post(record: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self.fanout.publish, record)

        stream.start()
        self.state = "live"
        feed = RecordFeed(self.hub, post, self.stats_extras, lambda: loop.call_soon_threadsafe(done.set))
        run_in_thread(stream, feed)
        await self._until(done, self.stopping, self.hub.draining)
        if done.is_set():
            return NORMAL, "the media file ended"
        draining = self.hub.draining.is_set()
        stream.stop("server shutting down" if draining else "stopped")
        await self._until(done, timeout=self.hub.settings.drain_s)
        if not done.is_set():
            stream.pool.cancel_finals(stream.stream_id)
        return (GOING_AWAY, "server shutting down") if draining else (NORMAL, "the session was stopped")

    async def _run_publish(self) -> tuple[int, str]:
        wait_s = self.hub.settings.idle_timeout_s
        await self._until(self.publisher_came, self.stopping, self.hub.draining, timeout=wait_s)
        if not self.publisher_came.is_set():
            if self.hub.draining.is_set():
                return GOING_AWAY, "server shutting down"
            if self.stopping.is_set():
                return NORMAL, "the session was stopped"
            return NORMAL, f"no publisher connected within {wait_s:g} s"
        self.state = "live"
        await self._until(self.publisher_left, self.stopping)
        if not self.publisher_left.is_set():  # DELETE: the publisher is told, its last finals still sent
            assert self.publisher is not None
            self.publisher.end_with(Closing(NORMAL, "the session was stopped", graceful=True))
            await self.publisher_left.wait()
        ending = self.publisher.ending if self.publisher is not None else None
        if ending is None:
            return NORMAL, "the publisher left before sending audio"
        if ending.code == GOING_AWAY:
            return GOING_AWAY, "server shutting down"
        if self.stopping.is_set():
            return NORMAL, "the session was stopped"
        if ending.code == NORMAL:
            return NORMAL, "the publisher ended the stream"
        if ending.code == ABNORMAL:
            return NORMAL, "the publisher disconnected"
        return NORMAL, f"the publisher was closed ({ending.code}): {ending.reason}"


class Sessions:
    """The server's sessions: the live ones and the last `ended_sessions` ended ones."""

    def __init__(self, hub: Hub, library: MediaLibrary) -> None:
        self.hub = hub
        self.library = library
        self.items: dict[str, SharedSession] = {}

    def get(self, session_id: object) -> SharedSession:
        session = self.items.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise RequestError("no such session: GET /v1/sessions lists them", 404, code="session_not_found")
        return session

    def listing(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.items.values()]

    def viewers(self) -> int:
        return sum(len(s.fanout.viewers) for s in self.items.values())

    def status_report(self) -> dict[str, int]:
        """For /status: sessions not yet ended, viewers now, media files."""
        live = sum(s.state != "ended" for s in self.items.values())
        return {"sessions_active": live, "viewers": self.viewers(), "media_files": len(self.library.items)}

    async def create(
        self,
        kind: str,
        model: str | None,
        decode_fields: Mapping[str, Any],
        media: str | None = None,
        translate_to: str | None = None,
    ) -> SharedSession:
        """Start a session of `kind` ("media": replay the library's file `media`; "publish": wait for
        a publisher) on `model` (loaded first when needed) if the server can: the translation it
        serves, a known file, a free slot. `decode_fields`: language, prompt and hotwords, checked
        against the model."""
        served = self.hub.config.translate.translate_to
        if translate_to is not None and translate_to != served:
            offer = f"it translates to {served!r} only" if served else "set translate_to in the profile it serves"
            raise RequestError(f"this server cannot translate to {translate_to!r}: {offer}")
        lease = await self.hub.lease(model, "session")  # loaded first when needed
        try:
            decode = decode_options(decode_fields, multilingual=lease.multilingual, model=lease.name)
            media = self.library.get(media).id if kind == "media" else None
            if self.hub.draining.is_set():
                raise RequestError("the server is shutting down", 503, "server_error")
            if not self.hub.admit_stream():
                raise RequestError(f"at capacity ({self.hub.max_streams} streams and sessions): try again later", 503,
                                   "server_error")
        except RequestError:
            lease.release()
            raise
        if media is not None:
            self.library.claim(media)
        session = SharedSession(self.hub, kind, decode, media, translate_to or served, lease)
        self._forget_ended()
        self.items[session.id] = session
        session.task = asyncio.create_task(session.run(self.library))
        self.hub.track(session.task)
        return session

    def _forget_ended(self) -> None:
        ended = [s for s in self.items.values() if s.state == "ended"]
        for old in ended[: max(0, len(ended) - self.hub.settings.ended_sessions + 1)]:
            del self.items[old.id]

    async def stop(self, session_id: str) -> SharedSession:
        """DELETE: stop taking audio, send the finals of what was heard, end the viewers."""
        session = self.get(session_id)
        session.stopping.set()
        if session.task is not None:
            await asyncio.shield(session.task)
        return session

    # -- WebSockets ------------------------------------------------------------------------------

    async def _open(self, websocket: WebSocket, session_id: str) -> SharedSession | None:
        """Accept and find the session; the connection's task is drained on shutdown like a stream's
        (a viewer's last events, `end` and its 1001, go out before uvicorn closes what is left)."""
        await websocket.accept()
        session = self.items.get(session_id)
        if session is None:
            await close_with(websocket, NO_SESSION, "no such session")
            return None
        task = asyncio.current_task()
        assert task is not None
        self.hub.track(task)
        return session

    async def watch(self, websocket: WebSocket, session_id: str) -> None:
        """A viewer: ready, the finals so far, the live events, the end."""
        session = await self._open(websocket, session_id)
        if session is None:
            return
        if self.viewers() >= self.hub.settings.max_viewers:
            limit = self.hub.settings.max_viewers
            await close_with(websocket, TRY_LATER, f"at capacity ({limit} viewers): try again later")
            return
        outbox = Outbox(self.hub.settings.viewer_buffer)
        history = session.fanout.join(outbox)
        sender = asyncio.create_task(self._send(websocket, session, history, outbox))
        listener = asyncio.create_task(_until_gone(websocket))
        try:
            await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            session.fanout.leave(outbox)
            for task in (sender, listener):
                task.cancel()

    async def _send(self, websocket: WebSocket, session: SharedSession, history: list[Record], outbox: Outbox) -> None:
        try:
            ready = {"type": "ready", "session": session.describe(), "history": len(history)}
            await websocket.send_text(json.dumps(ready))
            for record in history:
                await websocket.send_text(record.text)
            while True:
                item = await outbox.get()
                if isinstance(item, Closing):
                    await websocket.close(item.code, item.reason.encode()[:123].decode(errors="ignore"))
                    return
                await websocket.send_text(item.text if isinstance(item, Record) else json.dumps(item))
        except Exception:  # the viewer left: nothing to tell
            return

    async def publish(self, websocket: WebSocket, session_id: str) -> None:
        """The publisher: the protocol of /v1/stream; its stream's records also go to the viewers."""
        session = await self._open(websocket, session_id)
        if session is None:
            return
        if session.kind != "publish":
            await close_with(websocket, POLICY, "this session replays a media file: it takes no publisher")
            return
        if session.state != "waiting" or session.publisher is not None:
            await close_with(websocket, POLICY, f"this session is {session.state}: it has its publisher")
            return
        live = StreamConnection(websocket, self.hub, tap=session.fanout.publish, model=session.lease.name)
        session.publisher = live
        session.publisher_came.set()
        try:
            await live.run()
        except Exception:
            log.exception("publisher of session %s failed", session.id)
            await close_with(websocket, INTERNAL, "internal server error")
        finally:
            session.publisher_left.set()


async def _until_gone(websocket: WebSocket) -> None:
    """Viewers only listen: whatever they send is read and ignored until they leave."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
