"""Shared sessions: one source captioned once, watched by any number of viewers.

A session's source is a media file from the library replayed at 1x (a live source), or a publisher
sending audio over `WS /v1/sessions/{id}/publish` with the protocol of `/v1/stream`. Its stream runs
once; its records go to a `Fanout`, which keeps the finals so far (bounded) for late joiners and
hands every record to each viewer's own bounded `Outbox`. Publishing never waits on a viewer: a
viewer that leaves `viewer_buffer` events unsent is cut off with a reason (it may rejoin and gets
the history again, or only what follows `?after=SEQ`), and uvicorn's pings close a connection that
stops answering.

Viewers (`WS /v1/sessions/{id}/captions`) get `ready` (the session), the finals so far, then the
live events of `/v1/stream`; when the session ends, an `end` event with the reason and a close:
1000, or 1001 when the server shuts down. Sessions take a slot of the hub's stream capacity.

Replicas (state.py, cluster.py): the replica that produces a session *owns* it; its records also go
to the shared state, and on every other replica with viewers a follower feeds the same kind of
`Fanout` from there. A session whose owner is gone is taken over (a media file resumes at the end
of its last final, `seq` continuing) or, for a publisher, waits for it to reconnect anywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict
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
from livecap.server.admission import Refused, Told, Waiter, queued_record
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
from livecap.server.state import SharedState
from livecap.sources.file import FileSource

log = logging.getLogger("livecap.server")

SESSION_ID = re.compile(r"[0-9a-f]{12}")
PRIVATE = ("decode", "waiting_until", "lost")  # in a shared record, not shown to clients
STOP_POLL_S = 0.2


class Record(dict):
    """A record and its JSON, encoded once for every viewer."""

    text: str


def encoded(record: dict[str, Any]) -> Record:
    """A record with its JSON text encoded once for every viewer."""
    out = Record(record)
    out.text = json.dumps(record)
    return out


def shifted(record: dict[str, Any], seconds: float, utterances: int) -> dict[str, Any]:
    """A record of a stream that began `seconds` into the session, after `utterances` utterances."""
    if record["type"] not in ("final", "interim") or not (seconds or utterances):
        return record
    out = dict(record)
    for key in ("start", "end", "emitted_at", "audio_end"):
        if key in out:
            out[key] = round(out[key] + seconds, 3)
    if "words" in out:
        out["words"] = [
            {**w, "start": round(w["start"] + seconds, 3), "end": round(w["end"] + seconds, 3)}
            for w in out["words"]
        ]
    if "utterance" in out:
        out["utterance"] += utterances
        if out["type"] == "interim":
            out["seq"] = out["utterance"]
    return out


class Fanout:
    """A session's history and viewers (event loop only)."""

    def __init__(self, history: int) -> None:
        self.history: deque[Record] = deque(maxlen=history)
        self.finals = 0
        self.next_seq = 0  # the seq of the next final
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
            self.next_seq = record["seq"] + 1
        elif record["type"] == "speaker":
            self._revise(record["labels"])
        for viewer in list(self.viewers):
            try:
                viewer.put(item)
            except Closing as closing:
                self.viewers.discard(viewer)
                self.dropped += 1
                viewer.cut(
                    Closing(REJOIN, f"viewer too far behind ({closing.reason}): rejoin to catch up")
                )

    def _revise(self, labels: list[dict[str, Any]]) -> None:
        """Revised speakers go into the history too: a viewer who joins later sees them."""
        speakers = {label["seq"]: label["speaker"] for label in labels}
        for i, r in enumerate(self.history):
            if r["seq"] in speakers:
                words = [{**w, "speaker": speakers[r["seq"]]} for w in r.get("words", ())]
                self.history[i] = encoded(
                    {**r, "speaker": speakers[r["seq"]], **({"words": words} if words else {})}
                )

    def join(self, viewer: Outbox, after: int = -1) -> list[Record]:
        """Subscribe and return the finals so far past
        `after` (nothing can come in between: one loop)."""
        self.joined += 1
        if self.ended is not None:
            self._end_one(viewer, *self.ended)
        else:
            self.viewers.add(viewer)
        return [r for r in self.history if r["seq"] > after]

    def leave(self, viewer: Outbox) -> None:
        self.viewers.discard(viewer)

    def hand_off(self, reason: str) -> None:
        """The session goes on elsewhere: every viewer here
        is told to rejoin (REJOIN), none is ended."""
        for viewer in self.viewers:
            viewer.cut(Closing(REJOIN, reason))
        self.viewers.clear()

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
    """One captioned source and its viewers on this replica. `run()` is its task where this replica
    produces it (owns it): it holds its model (`lease`) from then to its end, so the model stays
    loaded while it waits for its publisher. `follow()` is its task where another replica produces
    it and viewers here watch it (no model is held)."""

    def __init__(
        self,
        hub: Hub,
        shared: SharedState,
        kind: str,
        decode: DecodeOptions,
        media: str | None,
        translate_to: str | None,
        lease: Lease | None,
        session_id: str | None = None,
        created: float | None = None,
    ) -> None:
        self.id = session_id or secrets.token_hex(6)
        self.hub = hub
        self.lease = lease
        self.shared = shared
        self.kind = kind  # "media" or "publish"
        self.media = media
        self.decode = decode
        self.translate_to = translate_to
        self.created = created or time.time()
        self.state = "starting" if kind == "media" else "waiting"
        self.waiter: Waiter | None = None  # its place in line, while it waits for a stream place
        self.placed = asyncio.Event()  # it holds a stream place
        self.ended = asyncio.Event()
        self.queue_position: int | None = None
        self.queue_eta_s: float | None = None
        self._publisher_told: Told | None = None
        self.end_reason: str | None = None
        self.fanout = Fanout(hub.settings.history_finals)
        # a media session's (a publish session's is its publisher's)
        self._stream: Stream | None = None
        self.duration: float | None = None
        self.publisher: StreamConnection | None = None
        self.publisher_came = asyncio.Event()
        self.publisher_left = asyncio.Event()
        self.stopping = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.owned = True
        self.record: dict[str, Any] = {}  # a followed session's record, as its owner last shared it
        self.offset = 0.0  # seconds of the source before this replica's stream began (a takeover)
        self.utterances = 0  # utterances before it
        self.seq_shift = 0  # a final's seq in the session less its seq in this replica's stream
        self.lost = False  # its publisher's replica went away: the viewers were told
        self.waiting_until = self.created + hub.settings.idle_timeout_s
        # "moved" (its publisher came to another replica) or "drained"
        self.handover: str | None = None
        self.moved = asyncio.Event()
        # its history is in the fan-out (a session produced here: from the start)
        self.synced = asyncio.Event()
        self.synced.set()
        self.unfollow = asyncio.Event()

    @classmethod
    def followed(cls, hub: Hub, shared: SharedState, record: dict[str, Any]) -> SharedSession:
        """Another replica's session, from its shared record."""
        session = cls(
            hub, shared, record["source"], DecodeOptions(**record["decode"]), record["media"],
            record["translate_to"], None, record["id"], record["created"],
        )
        session.owned = False
        session.synced.clear()
        session.refresh(record)
        return session

    def refresh(self, record: dict[str, Any]) -> None:
        self.record = record
        self.state, self.end_reason, self.duration = (
            record["state"],
            record["end_reason"],
            record["duration"],
        )
        self.lost, self.waiting_until = record["lost"], record["waiting_until"]

    @property
    def stream(self) -> Stream | None:
        return self.publisher.stream if self.publisher is not None else self._stream

    def viewers(self) -> int:
        return len(self.fanout.viewers) + self.shared.viewers_elsewhere(self.id)

    def describe(self) -> dict[str, Any]:
        """What GET /v1/sessions shows: state, source, viewers, position and latency."""
        if not self.owned:
            return {
                **{k: v for k, v in self.record.items() if k not in PRIVATE},
                "viewers": self.viewers(),
            }
        snap = self.stream.stats_snapshot() if self.stream is not None else None
        return {
            "id": self.id,
            "state": self.state,
            "source": self.kind,
            "media": self.media,
            "model": self.lease.name if self.lease is not None else self.record.get("model"),
            "language": (self.stream.decode if self.stream else self.decode).language,
            "translate_to": self.translate_to,
            "owner": self.shared.replica if self.state != "ended" else None,
            "created": round(self.created, 3),
            "end_reason": self.end_reason,
            "viewers": self.viewers(),
            "viewers_total": self.fanout.joined,
            "viewers_dropped": self.fanout.dropped,
            "finals": self.fanout.next_seq,
            "position": round(self.offset + self.stream.clock, 3)
            if self.stream is not None
            else self.offset,
            "duration": self.duration,
            "final_latency_p50": snap.final_p50 if snap else None,
            "final_latency_p95": snap.final_p95 if snap else None,
            "interim_latency_p50": snap.interim_p50 if snap else None,
            "behind_s": round(snap.behind_seconds, 3) if snap else None,
            "dropped_audio_s": round(snap.dropped_seconds, 3) if snap else None,
            "queue_position": self.queue_position,
            "queue_eta_s": self.queue_eta_s,
        }

    def told(self, position: int, eta_s: float | None) -> None:
        """Its place in line changed: the viewers here and a waiting publisher are told."""
        self.queue_position, self.queue_eta_s = position, eta_s
        self.fanout.publish(queued_record(position, eta_s))
        if self._publisher_told is not None:
            self._publisher_told(position, eta_s)

    async def admit_publisher(self, told: Told) -> None:
        """A publisher's `admit`: the session's own place (waited for in line), not one more."""
        if self.placed.is_set():
            return
        self._publisher_told = told
        if self.queue_position is not None:
            told(self.queue_position, self.queue_eta_s)
        await self._until(self.placed, self.ended)
        if not self.placed.is_set():
            raise Refused(self.end_reason or "the session ended while waiting for a place")

    def shared_record(self) -> dict[str, Any]:
        """The record other replicas see: what clients see, and what a replica taking over needs."""
        return {
            **self.describe(),
            "decode": asdict(self.decode),
            "waiting_until": self.waiting_until,
            "lost": self.lost,
        }

    def stats_extras(self) -> dict[str, Any]:
        """What a media session's stats records add (from its run thread: a length read is safe)."""
        return {"viewers": len(self.fanout.viewers)}

    def emit(self, record: dict[str, Any]) -> None:
        """A record produced here: numbered after what came before this replica's stream, then to
        the viewers here and to the other replicas'."""
        record = shifted(record, self.offset, self.utterances)
        if record["type"] == "final":
            # the stream's seq -> the session's
            self.seq_shift = self.fanout.next_seq - record["seq"]
            record = {**record, "seq": self.fanout.next_seq}
        elif record["type"] == "speaker":
            labels = [{**label, "seq": label["seq"] + self.seq_shift} for label in record["labels"]]
            record = {**record, "labels": labels}
        self.shared.append(self.id, record, self.fanout.next_seq)
        self.fanout.publish(record)

    async def run(self, library: MediaLibrary) -> None:
        """The session while this replica produces it; then it ends, is handed over, or followed."""
        code, reason = INTERNAL, "internal server error"
        try:
            if self.waiter is not None:
                code, reason = await self._wait_for_place(self.waiter)
            if self.placed.is_set():
                code, reason = await (
                    self._run_media(library) if self.kind == "media" else self._run_publish()
                )
        except RequestError as error:
            reason = error.message
        except Exception:
            log.exception("session %s failed", self.id)
        finally:
            if self.media is not None:
                library.release(self.media)
            if self.placed.is_set():
                self.hub.release_stream(
                    self.stream.stats_snapshot() if self.stream is not None else None, self.stream
                )
            if self.lease is not None:
                self.lease.release()
            await self._after(code, reason)
            self.ended.set()

    async def _wait_for_place(self, waiter: Waiter) -> tuple[int, str]:
        """Wait in line (a DELETE or a shutdown leaves it);
        the close for viewers when no place came."""
        self.waiter = None
        waiting = asyncio.create_task(self.hub.streams_line.wait(waiter))
        await self._until(self.stopping, self.hub.draining, task=waiting)
        if not waiting.done():
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            if self.hub.draining.is_set():
                return GOING_AWAY, "server shutting down"
            return NORMAL, "the session was stopped"
        try:
            waiting.result()
        except Refused as refused:
            self.hub.refused += 1
            return TRY_LATER, str(refused)
        self.queue_position = self.queue_eta_s = None
        self.state = "starting" if self.kind == "media" else "waiting"
        # its publisher's time starts now
        self.waiting_until = time.time() + self.hub.settings.idle_timeout_s
        self.placed.set()
        await self.shared.put_session(self.shared_record())
        return NORMAL, ""

    async def _after(self, code: int, reason: str) -> None:
        """End the session everywhere, or let another replica continue it."""
        if self.handover == "moved":  # its publisher is on another replica: watch it from there
            self.owned = False
            self.refresh(await self.shared.get_session(self.id) or self.shared_record())
            self.task = asyncio.create_task(self.follow())
            return
        if self.handover == "drained":
            # another replica continues it; the viewers here rejoin there
            self.fanout.hand_off("server shutting down: rejoin to continue")
            if self.kind == "publish" and self.state == "live":
                self.lose_publisher("its server shut down")
            record = {**self.shared_record(), "owner": None}
            self.owned = False
            self.refresh(record)
        else:
            self.state, self.end_reason = "ended", reason
            self.shared.append(
                self.id, {"type": "end", "code": code, "reason": reason}, self.fanout.next_seq
            )
            self.fanout.end(code, reason)
            record = self.shared_record()
        await self.shared.put_session(record)
        await self.shared.release(self.id)

    def lose_publisher(self, why: str) -> None:
        """The publisher's replica went away: the session
        waits for it to reconnect to any replica."""
        self.state, self.lost = "waiting", True
        self.waiting_until = time.time() + self.hub.settings.idle_timeout_s
        event = {
            "type": "publisher_lost",
            "reason": f"{why}: waiting for the publisher to reconnect",
        }
        self.shared.append(self.id, event, self.fanout.next_seq)
        if self.owned:  # a follower here gets it from the shared records
            self.fanout.publish(event)

    async def follow(self) -> None:
        """Feed the viewers here from the shared records until the session ends, this replica takes
        it over, or the server shuts down (the viewers rejoin elsewhere)."""
        self.unfollow.clear()
        try:
            await self.shared.follow(
                self.id, self.fanout, self.synced, (self.unfollow, self.hub.draining)
            )
        except Exception:
            log.exception("following session %s failed", self.id)
            self.fanout.end(INTERNAL, "internal server error")
        if self.fanout.ended is None and self.hub.draining.is_set():
            self.fanout.hand_off("server shutting down: rejoin to continue")

    async def own(self, lease: Lease) -> None:
        """Become its producer on `lease`'s model: stop following, take in what the previous owner
        shared, resume past it."""
        if self.task is not None and not self.task.done():
            self.unfollow.set()
            await self.task
        self.lease = lease
        # of an earlier turn as its owner
        self.handover, self.publisher, self._stream = None, None, None
        for event in (self.moved, self.publisher_came, self.publisher_left, self.stopping):
            event.clear()
        await self.shared.catch_up(self.id, self.fanout)
        last = self.fanout.history[-1] if self.fanout.history else None
        self.offset = last["end"] if last else 0.0
        self.utterances = last["utterance"] + 1 if last else 0
        self.owned = True
        self.synced.set()
        self.state = "starting" if self.kind == "media" else self.state

    async def _until(
        self, *events: asyncio.Event, timeout: float | None = None, task: asyncio.Task | None = None
    ) -> None:
        """Until one of `events` is set, `task` is done or `timeout` has passed."""
        waits = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait([*waits, *([task] if task else [])], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _run_media(self, library: MediaLibrary) -> tuple[int, str]:
        path = library.path(self.media or "")
        try:
            source = await asyncio.to_thread(FileSource, path, True, start_s=self.offset)
        except LivecapError as error:
            raise RequestError(str(error).replace(str(path), "the media file")) from None
        self.duration = source.duration
        assert self.lease is not None
        stream = self._stream = self.lease.stream(source, live=True, decode=self.decode)
        self.hub.measure(stream)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def post(record: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self.emit, record)

        stream.start()
        self.state = "live"
        await self.shared.put_session(self.shared_record())
        feed = RecordFeed(
            self.hub, post, self.stats_extras, lambda: loop.call_soon_threadsafe(done.set)
        )
        run_in_thread(stream, feed)
        await self._until(done, self.stopping, self.hub.draining)
        if done.is_set():
            return NORMAL, "the media file ended"
        draining = self.hub.draining.is_set()
        stream.stop("server shutting down" if draining else "stopped")
        await self._until(done, timeout=self.hub.settings.drain_s)
        if not done.is_set():
            stream.pool.withdraw(stream.stream_id)
        if draining and self.shared.clustered:
            self.handover = "drained"
        return (
            (GOING_AWAY, "server shutting down")
            if draining
            else (NORMAL, "the session was stopped")
        )

    async def _run_publish(self) -> tuple[int, str]:
        wait_s = max(0.0, self.waiting_until - time.time())
        await self._until(
            self.publisher_came, self.stopping, self.hub.draining, self.moved, timeout=wait_s
        )
        if not self.publisher_came.is_set():
            if self.moved.is_set():
                self.handover = "moved"
                return NORMAL, "its publisher is on another replica"
            if self.hub.draining.is_set():
                self.handover = "drained" if self.shared.clustered else None
                return GOING_AWAY, "server shutting down"
            if self.stopping.is_set():
                return NORMAL, "the session was stopped"
            return NORMAL, f"no publisher connected within {self.hub.settings.idle_timeout_s:g} s"
        self.state = "live"
        if self.lost:
            self.lost = False
            self.emit({"type": "resumed"})
        await self.shared.put_session(self.shared_record())
        await self._until(self.publisher_left, self.stopping)
        if not self.publisher_left.is_set():
            # DELETE: the publisher is told, its last finals still sent
            assert self.publisher is not None
            self.publisher.end_with(Closing(NORMAL, "the session was stopped", graceful=True))
            await self.publisher_left.wait()
        return self._publisher_outcome()

    def _publisher_outcome(self) -> tuple[int, str]:
        ending = self.publisher.ending if self.publisher is not None else None
        if ending is None:
            return NORMAL, "the publisher left before sending audio"
        if ending.code == GOING_AWAY:
            self.handover = "drained" if self.shared.clustered else None
            return GOING_AWAY, "server shutting down"
        if self.stopping.is_set():
            return NORMAL, "the session was stopped"
        if ending.code == NORMAL:
            return NORMAL, "the publisher ended the stream"
        if ending.code == ABNORMAL:
            return NORMAL, "the publisher disconnected"
        return NORMAL, f"the publisher was closed ({ending.code}): {ending.reason}"


class Sessions:
    """The sessions this replica produces or watches: the live ones and the last `ended_sessions`
    ended ones; with other replicas, also theirs (from the shared state)."""

    def __init__(self, hub: Hub, library: MediaLibrary, shared: SharedState | None = None) -> None:
        self.hub = hub
        self.library = library
        self.shared = shared or SharedState()
        self.items: dict[str, SharedSession] = {}

    async def find(self, session_id: object) -> SharedSession | None:
        """A session here, or another replica's, which viewers here then follow."""
        if not isinstance(session_id, str):
            return None
        session = self.items.get(session_id)
        if session is not None or not SESSION_ID.fullmatch(session_id):
            return session
        record = await self.shared.get_session(session_id)
        if record is None:
            return None
        if session_id in self.items:  # another viewer found it meanwhile: one follower per session
            return self.items[session_id]
        session = SharedSession.followed(self.hub, self.shared, record)
        self._forget_ended()
        self.items[session.id] = session
        session.task = asyncio.create_task(session.follow())
        return session

    async def get(self, session_id: object) -> SharedSession:
        session = await self.find(session_id)
        if session is None:
            raise RequestError(
                "no such session: GET /v1/sessions lists them", 404, code="session_not_found"
            )
        if not session.owned:
            session.refresh(await self.shared.get_session(session.id) or session.record)
        return session

    async def listing(self) -> list[dict[str, Any]]:
        """Every session of the service: this replica's own
        as they are now, the others' as shared."""
        local = {s.id: s for s in self.items.values()}
        listed = [
            {
                **{k: v for k, v in r.items() if k not in PRIVATE},
                "viewers": self._viewers_of(r["id"]),
            }
            for r in await self.shared.session_records()
            if r["id"] not in local or not local[r["id"]].owned
        ]
        return [*listed, *(s.describe() for s in local.values() if s.owned)]

    def _viewers_of(self, session_id: str) -> int:
        here = self.items.get(session_id)
        return (len(here.fanout.viewers) if here else 0) + self.shared.viewers_elsewhere(session_id)

    def viewers(self) -> int:
        return sum(len(s.fanout.viewers) for s in self.items.values())

    def viewer_counts(self) -> dict[str, int]:
        return {s.id: len(s.fanout.viewers) for s in self.items.values() if s.fanout.viewers}

    def owned_records(self) -> list[dict[str, Any]]:
        return [s.shared_record() for s in self.items.values() if s.owned and s.state != "ended"]

    def media_on_disk(self) -> dict[str, dict[str, Any]]:
        return self.library.on_disk()

    def load(self) -> dict[str, Any]:
        """This replica's load, for the others' cluster view."""
        return {"streams_active": self.hub.active, "streams_max": self.hub.stream_limit(),
                "draining": self.hub.draining.is_set(), "viewers": self.viewers()}

    async def delete_media(self, media_id: str) -> None:
        """DELETE /v1/media/{id}: refused while any replica's session replays it."""
        replayed = any(
            r["media"] == media_id and r["state"] != "ended"
            for r in await self.shared.session_records()
        )
        await self.library.delete(media_id, replayed)

    def status_report(self) -> dict[str, Any]:
        """For /status: sessions not yet ended, viewers now, media files (this replica's)."""
        live = sum(s.state != "ended" for s in self.items.values())
        return {
            "sessions_active": live,
            "viewers": self.viewers(),
            "media_files": len(self.library.items),
            **self.shared.status_report(),
        }

    async def create(
        self,
        kind: str,
        model: str | None,
        decode_fields: Mapping[str, Any],
        media: str | None = None,
        translate_to: str | None = None,
    ) -> SharedSession:
        """Start a session of `kind` ("media": replay the library's file `media`; "publish":
        wait for a publisher) on `model` (loaded first when needed) if the server can: the
        translation it serves, a known file, a free slot. `decode_fields`: language, prompt and
        hotwords, checked against the model."""
        served = self.hub.config.translate.translate_to
        if translate_to is not None and translate_to != served:
            offer = (
                f"it translates to {served!r} only"
                if served
                else "set translate_to in the profile it serves"
            )
            raise RequestError(f"this server cannot translate to {translate_to!r}: {offer}")
        lease = await self.hub.lease(model, "session")  # loaded first when needed
        try:
            decode = decode_options(
                decode_fields, multilingual=lease.multilingual, model=lease.name
            )
            media = (await self.library.get(media)).id if kind == "media" else None
            session = SharedSession(
                self.hub, self.shared, kind, decode, media, translate_to or served, lease
            )
            await self._admit(session, lease=kind == "media", wait=True)
        except RequestError:
            lease.release()
            raise
        await self.shared.put_session(session.shared_record())
        self._start(session)
        return session

    async def _admit(self, session: SharedSession, lease: bool, wait: bool = False) -> None:
        """A place for a session this replica is to produce, now or (`wait`) in line with the
        streams (its state `queued` meanwhile), and, with `lease`, the claim that makes it the
        producer; or the reason not (503)."""
        if self.hub.draining.is_set():
            raise RequestError("the server is shutting down", 503, "server_error")
        line = self.hub.streams_line
        if line.take_now():
            session.placed.set()
        elif not wait:
            self.hub.refused += 1
            raise RequestError(
                f"at capacity ({self.hub.stream_limit()} streams and sessions): try again later",
                503,
                "server_error",
            )
        else:
            try:
                session.waiter = line.join(session.told)
            except Refused as refused:
                self.hub.refused += 1
                raise RequestError(
                    f"{refused} (streams and sessions)", 503, "server_error"
                ) from None
            session.state = "queued"
        if lease and not await self.shared.claim(session.id):
            self._give_up_place(session)
            raise RequestError(
                "another replica produces this session, or the shared state is unreachable",
                503,
                "server_error",
            )

    def _give_up_place(self, session: SharedSession) -> None:
        if session.placed.is_set():
            self.hub.release_stream(None)
        elif session.waiter is not None:
            self.hub.streams_line.leave(session.waiter)

    def _start(self, session: SharedSession) -> None:
        if session.media is not None:
            self.library.claim(session.media)
        self._forget_ended()
        self.items[session.id] = session
        session.task = asyncio.create_task(session.run(self.library))
        self.hub.track(session.task)

    def _forget_ended(self) -> None:
        ended = [s for s in self.items.values() if s.state == "ended"]
        for old in ended[: max(0, len(ended) - self.hub.settings.ended_sessions + 1)]:
            del self.items[old.id]

    async def stop(self, session_id: str) -> dict[str, Any]:
        """DELETE: stop taking audio, send the finals of what was heard, end the viewers (the owner
        does, wherever it runs)."""
        session = await self.get(session_id)
        if not session.owned:
            await self.shared.request_stop(session.id)
            deadline = time.monotonic() + self.hub.settings.drain_s + 10
            while session.state != "ended" and time.monotonic() < deadline:
                await asyncio.sleep(STOP_POLL_S)
                session = await self.get(session_id)
            return session.describe()
        session.stopping.set()
        if session.task is not None:
            await asyncio.shield(session.task)
        return session.describe()

    # -- what the cluster asks -------------------------------------------------------------------

    async def reconcile(
        self, records: list[dict[str, Any]], orphans: list[dict[str, Any]], stops: set[str]
    ) -> None:
        """Stop what was asked to stop, hand a waiting publisher session to the
        replica its publisher joined, take over orphans (media sessions whose owner is
        gone) or wait for their publisher."""
        for session_id in stops:
            if session_id in self.items and self.items[session_id].owned:
                self.items[session_id].stopping.set()
        for record in records:
            here = self.items.get(record["id"])
            if (
                here is not None
                and here.owned
                and record["owner"] not in (None, self.shared.replica)
            ):
                here.moved.set()
        for record in orphans:
            try:
                await (
                    self._take_over(record)
                    if record["source"] == "media"
                    else self._orphan_publisher(record)
                )
            except RequestError:  # no room here, or another replica was first
                continue

    async def _take_over(self, record: dict[str, Any]) -> None:
        """Continue a media session whose owner is gone, from the end of its last final."""
        session = self.items.get(record["id"]) or SharedSession.followed(
            self.hub, self.shared, record
        )
        await self._become_owner(session)
        log.info(
            "took session %s over from %s at %.1f s, seq %d",
            session.id,
            record["owner"],
            session.offset,
            session.fanout.next_seq,
        )
        self._start(session)

    async def _orphan_publisher(self, record: dict[str, Any]) -> None:
        """A publisher session whose replica is gone: tell its viewers and wait for the publisher;
        past the wait, end it."""
        if not await self.shared.claim(record["id"]):  # one replica acts
            return
        try:
            session = self.items.get(record["id"]) or SharedSession.followed(
                self.hub, self.shared, record
            )
            await self.shared.catch_up(session.id, session.fanout)
            if record["state"] == "live":
                session.lose_publisher("its server went away")
                await self.shared.put_session(
                    {
                        **record,
                        "state": "waiting",
                        "owner": None,
                        "lost": True,
                        "waiting_until": session.waiting_until,
                    }
                )
            elif time.time() > record["waiting_until"]:
                reason = f"no publisher connected within {self.hub.settings.idle_timeout_s:g} s"
                end = {"type": "end", "code": NORMAL, "reason": reason}
                self.shared.append(session.id, end, session.fanout.next_seq)
                await self.shared.put_session(
                    {**record, "state": "ended", "owner": None, "end_reason": reason}
                )
        finally:
            await self.shared.release(record["id"])

    # -- WebSockets ------------------------------------------------------------------------------

    async def _open(self, websocket: WebSocket, session_id: str) -> SharedSession | None:
        """Accept and find the session; the connection's task is drained on shutdown like a stream's
        (a viewer's last events, `end` and its 1001, go out before uvicorn closes what is left)."""
        await websocket.accept()
        session = await self.find(session_id)
        if session is None:
            await close_with(websocket, NO_SESSION, "no such session")
            return None
        task = asyncio.current_task()
        assert task is not None
        self.hub.track(task)
        return session

    async def watch(self, websocket: WebSocket, session_id: str) -> None:
        """A viewer: ready, the finals so far (past `?after=SEQ`), the live events, the end."""
        after = _after_seq(websocket.query_params.get("after"))
        session = await self._open(websocket, session_id)
        if session is None:
            return
        if after is None:
            await close_with(
                websocket, POLICY, "after must be the seq of a final the viewer has (an integer)"
            )
            return
        if self.viewers() >= self.hub.settings.max_viewers:
            limit = self.hub.settings.max_viewers
            await close_with(
                websocket, TRY_LATER, f"at capacity ({limit} viewers): try again later"
            )
            return
        await session.synced.wait()
        outbox = Outbox(self.hub.settings.viewer_buffer)
        history = session.fanout.join(outbox, after)
        sender = asyncio.create_task(self._send(websocket, session, history, outbox))
        listener = asyncio.create_task(_until_gone(websocket))
        try:
            await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            session.fanout.leave(outbox)
            for task in (sender, listener):
                task.cancel()

    async def _send(
        self, websocket: WebSocket, session: SharedSession, history: list[Record], outbox: Outbox
    ) -> None:
        try:
            ready = {"type": "ready", "session": session.describe(), "history": len(history)}
            await websocket.send_text(json.dumps(ready))
            for record in history:
                await websocket.send_text(record.text)
            while True:
                item = await outbox.get()
                if isinstance(item, Closing):
                    await websocket.close(
                        item.code, item.reason.encode()[:123].decode(errors="ignore")
                    )
                    return
                await websocket.send_text(
                    item.text if isinstance(item, Record) else json.dumps(item)
                )
        except Exception:  # the viewer left: nothing to tell
            return

    async def publish(self, websocket: WebSocket, session_id: str) -> None:
        """The publisher: the protocol of /v1/stream; its
        stream's records also go to the viewers."""
        session = await self._open(websocket, session_id)
        if session is None:
            return
        refusal = await self._take_publisher(session)
        if refusal is not None:
            await close_with(websocket, *refusal)
            return
        assert session.lease is not None
        live = StreamConnection(
            websocket, self.hub, session.admit_publisher, tap=session.emit, model=session.lease.name
        )
        session.publisher = live
        session.publisher_came.set()
        try:
            await live.run()
        except Exception:
            log.exception("publisher of session %s failed", session.id)
            await close_with(websocket, INTERNAL, "internal server error")
        finally:
            session.publisher_left.set()

    async def _take_publisher(self, session: SharedSession) -> tuple[int, str] | None:
        """Make this replica the session's producer for a
        publisher that came here, or say why not."""
        if session.kind != "publish":
            return POLICY, "this session replays a media file: it takes no publisher"
        if not session.owned:
            session.refresh(await self.shared.get_session(session.id) or session.record)
            if session.state == "live":
                return TRY_LATER, (
                    "the session's publisher is connected to another replica, or that replica has "
                    "just gone: try again in a few seconds"
                )
        if session.state not in ("waiting", "queued") or session.publisher is not None:
            return POLICY, f"this session is {session.state}: it has its publisher"
        if session.owned:
            if not await self.shared.claim(session.id):
                return POLICY, "this session has its publisher on another replica"
            return None
        try:
            await self._become_owner(session)
        except RequestError as error:
            return (TRY_LATER if error.status == 503 else POLICY), error.message
        self._start(session)
        return None

    async def _become_owner(self, session: SharedSession) -> None:
        """Another replica's session becomes this one's to produce: its model, a slot, the claim."""
        lease = await self.hub.lease(session.record["model"], "session")
        try:
            await self._admit(session, lease=True)
        except RequestError:
            lease.release()
            raise
        try:
            await session.own(lease)
        except Exception:  # the shared state went away meanwhile: another replica will
            lease.release()
            self.hub.release_stream(None)
            await self.shared.release(session.id)
            raise RequestError("the shared state is unreachable", 503, "server_error") from None


async def _until_gone(websocket: WebSocket) -> None:
    """Viewers only listen: whatever they send is read and ignored until they leave."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


def _after_seq(value: str | None) -> int | None:
    """`?after=SEQ`: a rejoining viewer's last final (-1: none); None when it is not an integer."""
    if value is None:
        return -1
    try:
        return max(-1, int(value))
    except ValueError:
        return None
