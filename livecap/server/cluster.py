"""Replicas that share sessions through Redis (`livecap serve --redis-url redis://HOST:PORT/DB`).

Keys, all under `livecap:`:

    replica:{name}          a replica's heartbeat: its load, viewers per session (expires after a
    lease) replicas                the names of replicas seen media                   hash: media id
    -> its item (the files themselves are in a shared --data-dir) sessions                sorted
    set: session ids by creation time session:{id}            the session's record (JSON: state,
    owner, source, position, ...) session:{id}:lease      the replica producing it (SET NX PX,
    renewed every third of a lease) session:{id}:stop       a DELETE that reached another replica
    session:{id}:finals     Stream of finals (entry id seq+1-0) and of `end`, `publisher_lost` and
                            `resumed` (id next_seq-*), MAXLEN ~ history
    session:{id}:live       Stream of interims and stats, MAXLEN ~ LIVE_HISTORY

The owner writes each record once (one queue and one pipelined writer per replica, in order); on
every other replica with viewers one reader per session follows both streams (`XRANGE`, then
`XREAD BLOCK`) into the local fan-out, so Redis work grows with replicas and sessions, not viewers.
A final's entry id is derived from its seq, so a write repeated after a lost reply is refused by
Redis instead of duplicated, and a rejoining reader never sees a final twice.

While Redis is unreachable every replica goes on serving its own streams and local viewers: finals
and session records queue (interims and stats are dropped), /status and the log say so, and on
reconnection the queue is written, leases are reclaimed and the media index is re-announced. No
takeover happens for one lease after a reconnection, so live owners reclaim their sessions first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livecap.config import ServerConfig
from livecap.errors import LivecapError
from livecap.server.requests import RequestError
from livecap.server.state import SessionHost, SharedState

log = logging.getLogger("livecap.server")

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
PREFIX = "livecap:"
MEDIA, SESSIONS, REPLICAS = PREFIX + "media", PREFIX + "sessions", PREFIX + "replicas"
SHARED_TYPES = ("final", "end", "publisher_lost", "resumed")  # kept in the finals stream
LIVE_HISTORY = 50
BLOCK_MS = 1000
FLUSH_BATCH = 200
ENDED_TTL_S = 3600
RETRY_S = 0.5

RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def key(session_id: str, part: str = "") -> str:
    """A session's Redis key, or one of its parts' (lease, stop, finals, live)."""
    return f"{PREFIX}session:{session_id}{':' + part if part else ''}"


def check_reachable(url: str) -> None:
    """At start: Redis answers, or one clear error (before the model loads)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    except ValueError as error:
        raise LivecapError(
            f"--redis-url {url!r} is not a Redis URL ({error}): use redis://HOST:PORT/DB"
        ) from None
    try:
        client.ping()
    except RedisError as error:
        raise LivecapError(f"cannot reach Redis at {url}: {error}") from None
    finally:
        client.close()


class RedisState(SharedState):
    """Sessions, leases and the media index shared by every replica on one Redis."""

    clustered = True

    def __init__(self, url: str, replica: str, settings: ServerConfig) -> None:
        super().__init__(replica)
        self.url = url
        self.redis = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2,
                                            socket_timeout=BLOCK_MS / 1000 + 4)
        self.lease_ms = int(settings.lease_s * 1000)
        self.settings = settings
        self.reachable = True
        self.unreachable_since: float | None = None
        self.leases: set[str] = set()  # sessions this replica produces
        self.replicas: dict[str, dict[str, Any]] = {}  # alive at the last heartbeat
        self.written = 0
        self.live_dropped = 0  # interims and stats not shared while Redis was unreachable
        self.host: SessionHost | None = None
        self._queue: deque[tuple[str, dict[str, Any], int]] = deque()
        self._queued = asyncio.Event()
        self._records: dict[str, dict[str, Any]] = {}  # session records not yet written
        self._quiet_until = 0.0
        self._suspects: set[str] = set()  # orphaned at the last tick
        self._tasks: list[asyncio.Task] = []
        self.closing = False
        self.readers = 0  # sessions followed from Redis now (one reader each, however many viewers)

    # -- reachability ---------------------------------------------------------------------------

    def _lost(self, error: BaseException) -> None:
        if self.reachable and not self.closing:
            self.reachable, self.unreachable_since = False, time.time()
            log.warning(
                "Redis at %s is unreachable (%s): this replica goes on serving its own streams and "
                "viewers, "
                "and reconnects",
                self.url,
                error,
            )

    async def _back(self) -> None:
        await self.redis.ping()
        if not self.reachable:
            away = time.time() - (self.unreachable_since or 0)
            log.warning("Redis at %s is reachable again after %.1f s", self.url, away)
            self.reachable, self.unreachable_since = True, None
            self._quiet_until = time.monotonic() + self.lease_ms / 1000
            self._queued.set()
        await self._announce_media()

    # -- background work ------------------------------------------------------------------------

    async def start(self, host: SessionHost) -> None:
        self.host = host
        try:
            await self._announce_media()
        except UNREACHABLE as error:
            self._lost(error)
        self._tasks = [
            asyncio.create_task(self._tick_loop()),
            asyncio.create_task(self._flush_loop()),
        ]

    async def close(self) -> None:
        """Write what is queued (briefly: Redis may be gone), then stop."""
        self.closing = True
        deadline = time.monotonic() + 3
        while (self._queue or self._records) and self.reachable and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()

    async def _tick_loop(self) -> None:
        while True:
            try:
                await self._tick()
            except UNREACHABLE as error:
                self._lost(error)
            except Exception:  # a bug must not stop the heartbeat
                log.exception("cluster tick failed")
            await asyncio.sleep(self.lease_ms / 3000)

    async def _tick(self) -> None:
        """Heartbeat, renew leases, share the owned sessions' records, then act on the others'."""
        assert self.host is not None
        if not self.reachable:
            await self._back()
        await self.redis.set(
            f"{PREFIX}replica:{self.replica}",
            json.dumps(
                {
                    **self.host.load(),
                    "viewers_by_session": self.host.viewer_counts(),
                    "at": round(time.time(), 3),
                }
            ),
            px=self.lease_ms,
        )
        await self.redis.sadd(REPLICAS, self.replica)
        await self._renew()
        for record in self.host.owned_records():
            if record["id"] in self.leases:
                self._records[record["id"]] = record
        await self._write_records()
        self.replicas = await self._alive()
        records = await self._all_records()
        stops = await self._stops()
        orphans = await self._orphans(records) if time.monotonic() >= self._quiet_until else []
        await self.host.reconcile(records, orphans, stops)

    async def _renew(self) -> None:
        owned = sorted(self.leases)
        if not owned:
            return
        pipe = self.redis.pipeline(transaction=False)
        for session_id in owned:
            pipe.eval(RENEW, 1, key(session_id, "lease"), self.replica, self.lease_ms)
        for session_id, kept in zip(owned, await pipe.execute()):
            if not kept:
                self.leases.discard(session_id)
                log.warning("session %s: its lease was taken by another replica", session_id)

    async def _alive(self) -> dict[str, dict[str, Any]]:
        names = sorted(await self.redis.smembers(REPLICAS))
        beats = await self.redis.mget([f"{PREFIX}replica:{n}" for n in names]) if names else []
        gone = [n for n, beat in zip(names, beats) if beat is None]
        if gone:
            await self.redis.srem(REPLICAS, *gone)
        return {n: json.loads(beat) for n, beat in zip(names, beats) if beat is not None}

    async def _stops(self) -> set[str]:
        owned = sorted(self.leases)
        asked = await self.redis.mget([key(s, "stop") for s in owned]) if owned else []
        stops = {s for s, flag in zip(owned, asked) if flag}
        if stops:
            await self.redis.delete(*(key(s, "stop") for s in stops))
        return stops

    async def _orphans(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Sessions to act on whose owner is gone: a media session to continue, a publisher's
        session whose replica went away while live, or one that waited for its publisher too long.
        One is acted on only when it was orphaned at the tick before too: an owner that was only
        slow (or reconnecting) has renewed its lease by then."""
        now = time.time()
        candidates = [
            r
            for r in records
            if r["state"] != "ended"
            and r["id"] not in self.leases
            and r["owner"] not in self.replicas
            and (r["source"] == "media" or r["state"] == "live" or now > r["waiting_until"])
        ]
        leases = (
            await self.redis.mget([key(r["id"], "lease") for r in candidates]) if candidates else []
        )
        orphans = [r for r, lease in zip(candidates, leases) if lease is None]
        seen_before, self._suspects = self._suspects, {r["id"] for r in orphans}
        return [r for r in orphans if r["id"] in seen_before]

    # -- the media index ------------------------------------------------------------------------

    async def _announce_media(self) -> None:
        assert self.host is not None
        on_disk = self.host.media_on_disk()
        if on_disk:
            await self.redis.hset(
                MEDIA, mapping={i: json.dumps(item) for i, item in on_disk.items()}
            )

    async def media_items(self, local: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        try:
            return {i: json.loads(item) for i, item in (await self.redis.hgetall(MEDIA)).items()}
        except UNREACHABLE as error:
            self._lost(error)
            return dict(local)

    async def media_put(self, item: dict[str, Any]) -> None:
        try:
            await self.redis.hset(MEDIA, item["id"], json.dumps(item))
        except UNREACHABLE as error:  # announced again on reconnection
            self._lost(error)

    async def media_remove(self, media_id: str) -> None:
        try:
            await self.redis.hdel(MEDIA, media_id)
        except UNREACHABLE as error:
            self._lost(error)

    # -- session records and leases -------------------------------------------------------------

    async def put_session(self, record: dict[str, Any]) -> None:
        self._records[record["id"]] = record
        try:
            await self._write_records()
        except UNREACHABLE as error:  # written on reconnection
            self._lost(error)

    async def _write_records(self) -> None:
        pending = list(self._records.items())
        if not pending:
            return
        pipe = self.redis.pipeline(transaction=False)
        for session_id, record in pending:
            ended = record["state"] == "ended"
            pipe.set(key(session_id), json.dumps(record), ex=ENDED_TTL_S if ended else None)
            pipe.zadd(SESSIONS, {session_id: record["created"]})
            if ended:
                for part in ("finals", "live"):
                    pipe.expire(key(session_id, part), ENDED_TTL_S)
        await pipe.execute()
        for session_id, record in pending:
            if self._records.get(session_id) is record:
                del self._records[session_id]

    async def _all_records(self) -> list[dict[str, Any]]:
        ids = await self.redis.zrange(SESSIONS, 0, -1)
        raws = await self.redis.mget([key(i) for i in ids]) if ids else []
        gone = [i for i, raw in zip(ids, raws) if raw is None]
        if gone:
            await self.redis.zrem(SESSIONS, *gone)
        records = [json.loads(raw) for raw in raws if raw is not None]
        ended = [r["id"] for r in records if r["state"] == "ended"][-self.settings.ended_sessions:]
        return [r for r in records if r["state"] != "ended" or r["id"] in ended]

    async def session_records(self) -> list[dict[str, Any]]:
        try:
            return await self._all_records()
        except UNREACHABLE as error:
            self._lost(error)
            return []

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        try:
            raw = await self.redis.get(key(session_id))
        except UNREACHABLE as error:
            self._lost(error)
            return None
        return json.loads(raw) if raw is not None else None

    async def claim(self, session_id: str) -> bool:
        try:
            taken = await self.redis.set(
                key(session_id, "lease"), self.replica, nx=True, px=self.lease_ms
            )
        except UNREACHABLE as error:
            self._lost(error)
            return False
        if taken:
            self.leases.add(session_id)
        return bool(taken)

    async def release(self, session_id: str) -> None:
        self.leases.discard(session_id)
        try:
            await self.redis.eval(RELEASE, 1, key(session_id, "lease"), self.replica)
        except UNREACHABLE as error:  # it expires on its own
            self._lost(error)

    async def request_stop(self, session_id: str) -> None:
        try:
            await self.redis.set(key(session_id, "stop"), "1", ex=60)
        except UNREACHABLE as error:
            self._lost(error)
            raise RequestError(
                "the shared state (Redis) is unreachable: try again", 503, "server_error"
            ) from None

    # -- a session's records --------------------------------------------------------------------

    def append(self, session_id: str, record: dict[str, Any], next_seq: int) -> None:
        if record["type"] not in SHARED_TYPES and not self.reachable:
            self.live_dropped += 1
            return
        self._queue.append((session_id, record, next_seq))
        self._queued.set()

    async def _flush_loop(self) -> None:
        """Write queued records in order, in pipelined batches; on a lost connection keep them."""
        while True:
            await self._queued.wait()
            batch = [self._queue[i] for i in range(min(len(self._queue), FLUSH_BATCH))]
            if not batch:
                self._queued.clear()
                continue
            try:
                await self._write(batch)
            except UNREACHABLE as error:
                self._lost(error)
                await asyncio.sleep(RETRY_S)
                continue
            for _ in batch:
                self._queue.popleft()
            self.written += len(batch)

    async def _write(self, batch: list[tuple[str, dict[str, Any], int]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        history = self.settings.history_finals
        for session_id, record, next_seq in batch:
            fields = {"r": json.dumps(record)}
            if record["type"] == "final":
                pipe.xadd(
                    key(session_id, "finals"), fields, id=f"{record['seq'] + 1}-0", maxlen=history
                )
            elif record["type"] in SHARED_TYPES:
                pipe.xadd(key(session_id, "finals"), fields, id=f"{next_seq}-*", maxlen=history)
            else:
                pipe.xadd(key(session_id, "live"), fields, maxlen=LIVE_HISTORY)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, UNREACHABLE):
                raise result
            if isinstance(result, ResponseError) and "equal or smaller" in str(result):
                continue  # written before a lost reply: Redis keeps one copy
            if isinstance(result, Exception):
                log.warning("Redis refused a session record: %s", result)

    @staticmethod
    def _deliver(fanout: Any, record: dict[str, Any]) -> None:
        if record["type"] == "end":
            fanout.end(record["code"], record["reason"])
        elif record["type"] != "final" or record["seq"] >= fanout.next_seq:
            fanout.publish(record)

    async def catch_up(self, session_id: str, fanout: Any) -> None:
        for _, fields in await self.redis.xrange(
            key(session_id, "finals"), min=f"({fanout.next_seq}-0"
        ):
            record = json.loads(fields["r"])
            if record["type"] == "final":
                fanout.publish(record)

    async def follow(
        self, session_id: str, fanout: Any, synced: asyncio.Event, stops: tuple[asyncio.Event, ...]
    ) -> None:
        """The history (XRANGE), then the tail of both streams (XREAD BLOCK), into `fanout`."""
        self.readers += 1
        try:
            await self._follow(session_id, fanout, synced, stops)
        finally:
            self.readers -= 1

    async def _follow(
        self, session_id: str, fanout: Any, synced: asyncio.Event, stops: tuple[asyncio.Event, ...]
    ) -> None:
        finals, live = key(session_id, "finals"), key(session_id, "live")
        last = {finals: f"{fanout.next_seq}-0", live: "0-0"}  # the entry of the last final it has
        while fanout.ended is None and not any(stop.is_set() for stop in stops):
            try:
                if not synced.is_set():
                    for entry, fields in await self.redis.xrange(finals, min=f"({last[finals]}"):
                        self._deliver(fanout, json.loads(fields["r"]))
                        last[finals] = entry
                    newest = await self.redis.xrevrange(live, count=1)
                    last[live] = newest[0][0] if newest else "0-0"
                    synced.set()
                    continue
                reply = await self.redis.xread(last, block=BLOCK_MS, count=FLUSH_BATCH)
            except UNREACHABLE as error:
                self._lost(error)
                await asyncio.sleep(RETRY_S)
                continue
            for stream, entries in (reply.items() if isinstance(reply, dict) else reply):
                for entry, fields in entries:
                    last[stream] = entry
                    self._deliver(fanout, json.loads(fields["r"]))

    def viewers_elsewhere(self, session_id: str) -> int:
        return sum(
            beat["viewers_by_session"].get(session_id, 0)
            for name, beat in self.replicas.items()
            if name != self.replica
        )

    def status_report(self) -> dict[str, Any]:
        now = time.time()
        return {
            "cluster": {
                "replica": self.replica,
                "redis": "connected" if self.reachable else "unreachable",
                "redis_unreachable_s": round(now - self.unreachable_since, 1)
                if self.unreachable_since
                else None,
                "records_queued": len(self._queue) + len(self._records),
                "records_written": self.written,
                "live_records_dropped": self.live_dropped,
                "sessions_owned": len(self.leases),
                "readers": self.readers,
                "replicas": [
                    {
                        "name": name,
                        **{k: v for k, v in beat.items() if k not in ("viewers_by_session", "at")},
                        "sessions_watched": len(beat["viewers_by_session"]),
                        "seen_s_ago": round(now - beat["at"], 1),
                    }
                    for name, beat in sorted(self.replicas.items())
                ],
            }
        }
