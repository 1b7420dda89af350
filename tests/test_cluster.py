"""Replicas sharing sessions through a real Redis, behind a real HAProxy, on loopback: the cluster
of scripts/cluster.sh (Redis, replicas a and b as `livecap serve` processes, deploy/haproxy.cfg).
Media uploaded through one replica is listed by the other; a session made on a is watched on b;
20 viewers over both; the owner killed mid-session (takeover); a publisher whose replica died;
SIGTERM on a replica behind HAProxy; Redis stopped and restarted mid-session."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from conftest import REPO, Clip
from livecap.bench.mix import write_wav
from livecap.bench.streams import free_port
from livecap.bench.wer import wer
from livecap.server.client import pcm_frames, stream_frames
from livecap.sources.file import decode_blocks

pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "cluster.sh"
LEASE_S = 3.0


@dataclass
class Cluster:
    dir: Path
    env: dict[str, str]
    ports: dict[str, int]

    def base(self, name: str) -> str:
        port = {"front": "FRONT_PORT", "a": "PORT_A", "b": "PORT_B"}[name]
        return f"http://127.0.0.1:{self.ports[port]}"

    def script(self, *args: str) -> None:
        subprocess.run(["bash", str(SCRIPT), *args], env=self.env, check=True, timeout=240,
                       stdout=subprocess.DEVNULL)

    def signal(self, name: str, sig: int) -> None:
        os.kill(int((self.dir / f"{name}.pid").read_text()), sig)

    def wait_down(self, name: str) -> None:
        """Until the process has exited (its PID no longer runs)."""
        pid = int((self.dir / f"{name}.pid").read_text())
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in _proc_state(pid), 60)

    def up(self, name: str) -> bool:
        try:
            return httpx.get(self.base(name) + "/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def redis_up(self) -> bool:
        return (
            subprocess.run(
                ["redis-cli", "-p", str(self.ports["REDIS_PORT"]), "ping"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            == "PONG"
        )


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def wait_for(predicate, timeout: float = 60.0) -> None:  # noqa: ANN001 - a callable
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if shutil.which("redis-server") is None or shutil.which("haproxy") is None:
        pytest.skip("redis-server and haproxy are not installed (scripts/install.sh installs them)")
    folder = tmp_path_factory.mktemp("cluster")
    ports = {
        name: free_port() for name in ("FRONT_PORT", "REDIS_PORT", "PORT_A", "PORT_B", "STATS_PORT")
    }
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "HF_HUB_OFFLINE": "1",
        "LIVECAP": f"{sys.executable} -m livecap",
        "SERVE_ARGS": f"--lease-s {LEASE_S:g} --drain-s 5",
    }
    running = Cluster(folder, env, ports)
    try:
        running.script("start", str(folder))
        yield running
    finally:
        running.script("stop", str(folder))


@pytest.fixture
def healthy(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, whole again after the test (a replica or Redis it stopped is started again)."""
    yield cluster
    if not cluster.redis_up():
        cluster.script("redis", str(cluster.dir))
    for name in ("a", "b"):
        if not cluster.up(name):
            cluster.wait_down(name)
            cluster.script("replica", str(cluster.dir), name)


@pytest.fixture(scope="module")
def talk(en_clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """About 25 s of speech with pauses: several clips in a row, and their reference."""
    chosen: list[Clip] = []
    for clip in sorted(en_clips, key=lambda c: -c.duration) * 8:
        if sum(c.duration + 1 for c in chosen) >= 25:
            break
        chosen.append(clip)
    pause = np.zeros(16000, np.float32)
    audio = np.concatenate([part for c in chosen for part in (*decode_blocks(c.path), pause)])
    path = write_wav(tmp_path_factory.mktemp("talk") / "talk.wav", audio)
    return Clip(path, " ".join(c.reference for c in chosen), "en", len(audio) / 16000)


def upload(base: str, path: Path) -> str:
    with path.open("rb") as handle:
        response = httpx.post(base + "/v1/media", files={"file": (path.name, handle)}, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def create(base: str, **body: object) -> dict:
    response = httpx.post(base + "/v1/sessions", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def info(base: str, session_id: str) -> dict:
    return httpx.get(base + f"/v1/sessions/{session_id}", timeout=10).json()


async def ainfo(base: str, session_id: str) -> dict:
    """`info` off the event loop, which the viewers and publishers of the test share."""
    return await asyncio.to_thread(info, base, session_id)


@dataclass
class Watched:
    events: list[dict] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)

    @property
    def finals(self) -> list[dict]:
        return [e for e in self.events if e["type"] == "final"]

    def text(self) -> str:
        return " ".join(f["text"] for f in self.finals)


async def watch(base: str, session_id: str, rejoin: str | None = None) -> Watched:
    """A viewer until its session's `end`; cut off (its replica gone or draining), it rejoins
    through `rejoin` (HAProxy) with `?after=` the last seq it has."""
    seen = Watched()
    last = -1
    for _ in range(100):
        url = base.replace("http://", "ws://") + f"/v1/sessions/{session_id}/captions?after={last}"
        try:
            async with websockets.connect(url, open_timeout=10) as connection:
                try:
                    async for message in connection:
                        event = json.loads(message)
                        seen.events.append(event)
                        last = event["seq"] if event["type"] == "final" else last
                except websockets.ConnectionClosed:
                    pass
                seen.closes.append(connection.close_code)
        except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError):
            seen.closes.append(None)
        if seen.events and seen.events[-1]["type"] == "end":
            return seen
        base = rejoin or base
        await asyncio.sleep(0.2)  # the replica it was on is gone: try again through the balancer
    raise AssertionError(f"the viewer never saw the end: {seen.closes}")


def split_at_pause(frames: list[bytes]) -> tuple[int, float]:
    """A frame index inside a pause past the middle, and where the speech before it ends (s)."""
    silent = [not any(frame) for frame in frames]
    start = next(i for i in range(len(frames) // 2, len(frames)) if all(silent[i:i + 5]))
    speech_end = max(i for i in range(start) if not silent[i]) + 1
    return start + 3, speech_end * 0.1


def check_whole(seen: Watched, reference: str, end: str = "the media file ended") -> None:
    """Every final once, in order, seq contiguous from 0, the whole transcript, then the end."""
    assert [f["seq"] for f in seen.finals] == list(range(len(seen.finals))), [
        f["seq"] for f in seen.finals
    ]
    assert seen.events[-1] == {"type": "end", "reason": end}
    assert wer(reference, seen.text()) < 0.35, seen.text()


# -- sharing ---------------------------------------------------------------------------------------


def test_media_and_sessions_are_shared_and_20_viewers_over_both_get_every_final(
        healthy: Cluster, en_clips: list[Clip]) -> None:
    a, b = healthy.base("a"), healthy.base("b")
    assert httpx.get(a + "/ready").json() == {"status": "ready"}
    clip = max((c for c in en_clips if c.duration <= 12), key=lambda c: c.duration)
    media = upload(a, clip.path)
    assert media in [m["id"] for m in httpx.get(b + "/v1/media").json()["data"]]
    session = create(a, media=media)
    assert session["owner"] == "a"
    seen_on_b = info(b, session["id"])
    assert seen_on_b["id"] == session["id"] and seen_on_b["media"] == media
    refused = httpx.delete(b + f"/v1/media/{media}")
    assert refused.status_code == 409, refused.text  # replayed on a

    async def viewers() -> tuple[list[Watched], int]:
        watching = [asyncio.create_task(watch(a if n % 2 else b, session["id"])) for n in range(20)]
        async with httpx.AsyncClient(timeout=30) as client:
            while (now := (await client.get(b + f"/v1/sessions/{session['id']}")).json())[
                "viewers"
            ] < 20:
                assert now["state"] != "ended", now
                await asyncio.sleep(0.1)
            readers = (await client.get(b + "/status")).json()["cluster"]["readers"]
        return await asyncio.gather(*watching), readers

    results, readers_on_b = asyncio.run(viewers())
    assert readers_on_b == 1  # ten viewers on b, one Redis reader
    first = results[0]
    check_whole(first, clip.reference)
    for seen in results:
        assert [(f["seq"], f["text"]) for f in seen.finals] == [
            (f["seq"], f["text"]) for f in first.finals
        ]
        assert seen.closes == [1000]
    late = asyncio.run(watch(b, session["id"]))  # ended: its history from Redis, then the end
    assert [f["text"] for f in late.finals] == [f["text"] for f in first.finals]
    status = httpx.get(b + "/status").json()["cluster"]
    assert status["redis"] == "connected" and [r["name"] for r in status["replicas"]] == ["a", "b"]
    assert httpx.delete(b + f"/v1/media/{media}").status_code == 200
    assert media not in [m["id"] for m in httpx.get(a + "/v1/media").json()["data"]]


def test_rejoining_viewer_gets_only_what_follows_its_last_seq(
    healthy: Cluster, en_clips: list[Clip]
) -> None:
    a, b = healthy.base("a"), healthy.base("b")
    clip = max((c for c in en_clips if c.duration <= 12), key=lambda c: c.duration)
    session = create(a, media=upload(b, clip.path))
    whole = asyncio.run(watch(b, session["id"]))
    assert len(whole.finals) >= 2
    url = b.replace("http://", "ws://") + f"/v1/sessions/{session['id']}/captions?after=0"

    async def rejoin() -> list[dict]:
        async with websockets.connect(url) as connection:
            return [json.loads(m) async for m in connection]

    events = asyncio.run(rejoin())
    assert events[0]["history"] == len(whole.finals) - 1
    assert [e["seq"] for e in events if e["type"] == "final"] == [
        f["seq"] for f in whole.finals[1:]
    ]


# -- failures -------------------------------------------------------------------------------------


def test_owner_killed_mid_session_is_taken_over(healthy: Cluster, talk: Clip) -> None:
    a, b, front = healthy.base("a"), healthy.base("b"), healthy.base("front")
    session = create(a, media=upload(front, talk.path))

    async def scenario() -> list[Watched]:
        viewers = [
            asyncio.create_task(watch(base, session["id"], rejoin=front))
            for base in (a, a, b, b, front, front)
        ]
        while (await ainfo(b, session["id"]))["finals"] < 2:
            await asyncio.sleep(0.2)
        healthy.signal("a", signal.SIGKILL)
        return await asyncio.gather(*viewers)

    results = asyncio.run(scenario())
    for seen in results:
        check_whole(seen, talk.reference)
    assert [f["text"] for f in results[0].finals] == [f["text"] for f in results[2].finals]
    # a's viewers rejoined, b's stayed
    assert results[0].closes[0] == 1006 and results[2].closes == [1000]
    ended = info(b, session["id"])
    assert ended["state"] == "ended" and abs(ended["position"] - talk.duration) < 0.5


def test_publisher_reconnects_after_its_replica_died(healthy: Cluster, talk: Clip) -> None:
    a, b, front = healthy.base("a"), healthy.base("b"), healthy.base("front")
    frames = pcm_frames(talk.path, silence_s=2.0)
    half, speech_end = split_at_pause(frames)
    # and 1.5 s of silence: its last utterance ends
    first = frames[:half] + [bytes(len(frames[0]))] * 15
    sid = create(front, source="publish")["id"]

    async def publish(base: str, part: list[bytes], wait_heard: bool) -> None:
        url = base.replace("http://", "ws://") + f"/v1/sessions/{sid}/publish"
        while True:  # refused (1013) while the session still looks live: try again
            connection = await websockets.connect(url)
            try:
                await connection.send('{"type": "start"}')
                if json.loads(await connection.recv())["type"] == "ready":
                    break
                await connection.recv()  # the refusal's close
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1013, closed
            await asyncio.sleep(0.5)
        t0 = time.monotonic()
        for index, frame in enumerate(part):
            await asyncio.sleep(max(0.0, t0 + index * 0.1 - time.monotonic()))
            await connection.send(frame)
        if wait_heard:  # until the finals of what it said are out, then its replica dies
            async for message in connection:
                event = json.loads(message)
                if event["type"] == "final" and event["end"] >= speech_end - 0.5:
                    return
        await connection.send('{"type": "end"}')
        async for _ in connection:
            pass

    async def scenario() -> Watched:
        viewer = asyncio.create_task(watch(b, sid))
        while (await ainfo(b, sid))["viewers"] < 1:
            await asyncio.sleep(0.1)
        await publish(a, first, wait_heard=True)
        healthy.signal("a", signal.SIGKILL)
        await publish(front, frames[half:], wait_heard=False)
        return await viewer

    seen = asyncio.run(scenario())
    kinds = [e["type"] for e in seen.events if e["type"] in ("publisher_lost", "resumed")]
    assert kinds == ["publisher_lost", "resumed"], kinds
    lost = next(i for i, e in enumerate(seen.events) if e["type"] == "publisher_lost")
    assert any(e["type"] == "final" for e in seen.events[:lost])
    assert any(e["type"] == "final" for e in seen.events[lost:])
    check_whole(seen, talk.reference, end="the publisher ended the stream")


def test_sigterm_drains_a_replica_behind_haproxy(healthy: Cluster, talk: Clip) -> None:
    front = healthy.base("front")
    frames = pcm_frames(talk.path, silence_s=1.0)
    # a's: handed over when a drains
    session = create(healthy.base("a"), media=upload(front, talk.path))

    async def stream() -> tuple[int | None, list[dict]]:  # reads while it sends, as a client must
        result = await stream_frames(
            front.replace("http://", "ws://") + "/v1/stream", frames, timeout=120
        )
        return result.close_code, result.events

    async def streams_on(client: httpx.AsyncClient, name: str) -> int:
        return (await client.get(healthy.base(name) + "/status")).json()["streams_active"]

    async def scenario() -> tuple[str, list[str], tuple[int | None, list[dict]], Watched]:
        viewer = asyncio.create_task(watch(front, session["id"], rejoin=front))
        live = asyncio.create_task(stream())
        async with httpx.AsyncClient(timeout=30) as client:  # the clients' loop is never blocked
            while ((await client.get(front + f"/v1/sessions/{session['id']}")).json()["finals"] < 1
                   or await streams_on(client, "a") + await streams_on(client, "b") < 2):
                await asyncio.sleep(0.2)
            # the stream's replica drains (a: it also owns the session; b: it has only the stream)
            target = "a" if await streams_on(client, "a") == 2 else "b"
            healthy.signal(target, signal.SIGTERM)
            await asyncio.to_thread(wait_for, lambda: not healthy.up(target), 30)
            served = [
                (await client.get(front + "/status")).json()["cluster"]["replica"]
                for _ in range(10)
            ]
        return target, served, await live, await viewer

    target, served, (code, events), seen = asyncio.run(scenario())
    other = "b" if target == "a" else "a"
    assert served == [other] * 10  # no new connection reached the draining replica
    assert code in (1000, 1001) and [e for e in events if e["type"] == "final"], (
        target,
        code,
        events[-3:],
    )
    assert not [e for e in events if e["type"] == "error" and "shutting down" not in e["message"]]
    check_whole(seen, talk.reference)


def test_redis_stopped_and_restarted_mid_session(healthy: Cluster, talk: Clip) -> None:
    a, b = healthy.base("a"), healthy.base("b")
    session = create(a, media=upload(a, talk.path))

    def cluster_of(base: str) -> dict:
        return httpx.get(base + "/status").json()["cluster"]

    async def scenario() -> tuple[Watched, Watched, dict]:
        here = asyncio.create_task(watch(a, session["id"]))
        there = asyncio.create_task(watch(b, session["id"]))
        while (await ainfo(a, session["id"]))["finals"] < 1:
            await asyncio.sleep(0.2)
        healthy.signal("redis", signal.SIGTERM)
        await asyncio.to_thread(wait_for, lambda: cluster_of(a)["redis"] == "unreachable", 30)
        assert not here.done()  # a's viewer goes on watching
        before = (await ainfo(a, session["id"]))["finals"]
        while (await ainfo(a, session["id"]))["finals"] == before:
            # a final made while Redis is away
            await asyncio.sleep(0.2)
        during = await asyncio.to_thread(cluster_of, a)
        await asyncio.to_thread(healthy.script, "redis", str(healthy.dir))
        return await here, await there, during

    here, there, during = asyncio.run(scenario())
    assert during["redis"] == "unreachable" and during["records_queued"] >= 1
    check_whole(here, talk.reference)
    check_whole(there, talk.reference)  # what a queued while Redis was away reached b's viewer too
    assert [f["text"] for f in here.finals] == [f["text"] for f in there.finals]
    wait_for(
        lambda: cluster_of(a)["redis"] == "connected" and cluster_of(a)["records_queued"] == 0, 30
    )
    log = (healthy.dir / "a.log").read_text()
    assert "is unreachable" in log and "reachable again" in log


def test_redis_unreachable_at_start_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [
            sys.executable, "-m", "livecap", "serve", "--redis-url", f"redis://127.0.0.1:{port}/0",
            "--data-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in result.stderr
