"""Capacity on a real server on loopback (real tiny.en, real speech, real clients): many
streams at once, the waiting list (positions, first come first served, leaving it, its limit),
sessions and uploads in line, workers that heal from a raising or hung call, and a memory
budget that forces interims off while every final still comes. Timings are never asserted (see
`livecap bench --streams`)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from conftest import Clip, long_recording
from livecap.asr.base import AsrRequest, AsrResult
from livecap.asr.pool import AsrPool
from livecap.bench.streams import start_upload
from livecap.bench.wer import wer
from livecap.config import Config
from livecap.engine import Engine
from livecap.server.client import StreamResult, pcm_frames, stream_file, stream_frames
from test_server import collect, running, status_when, ws_url

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with Engine(Config()) as shared:
        yield shared


def shortest(clips: list[Clip], count: int) -> list[Clip]:
    """`count` clips, cycling through the shortest with at least 3 s of speech (CI time)."""
    short = sorted((c for c in clips if c.duration >= 3), key=lambda c: c.duration)[:6]
    return [short[i % len(short)] for i in range(count)]


def streams(base: str, chosen: list[Clip], **start: object) -> list[StreamResult]:
    async def all_at_once() -> list[StreamResult]:
        return list(
            await asyncio.gather(
                *(
                    stream_file(ws_url(base), clip.path, speed=1.0, start=dict(start), timeout=600)
                    for clip in chosen
                )
            )
        )

    return asyncio.run(all_at_once())


def own_captions(clip: Clip, result: StreamResult) -> None:
    assert result.close_code == 1000, result.close_reason
    assert [f["seq"] for f in result.finals] == list(range(len(result.finals)))
    assert wer(clip.reference, result.text) < 0.35, (clip.path.name, result.text)


def test_eight_concurrent_streams_are_all_admitted(engine: Engine, en_clips: list[Clip]) -> None:
    chosen = shortest(en_clips, 8)
    with running(engine, max_streams=8) as base:
        results = streams(base, chosen)
        status = httpx.get(base + "/status").json()
    for clip, result in zip(chosen, results):
        own_captions(clip, result)
        assert result.positions == [] and not [e for e in result.events if e["type"] == "error"]
    assert status["streams_total"] == 8 and status["streams_refused"] == 0


def test_24_clients_wait_in_line_first_come_first_served(
    engine: Engine, en_clips: list[Clip]
) -> None:
    chosen = shortest(en_clips, 24)
    with running(engine, max_streams=4, max_wait_s=300) as base:
        results = streams(base, chosen)
        status = httpx.get(base + "/status").json()
    queued = [r for r in results if r.positions]
    assert len(queued) == 20  # four places: the other twenty waited
    for clip, result in zip(chosen, results):
        own_captions(clip, result)
        positions = result.positions
        # falling, to 1
        assert positions == sorted(set(positions), reverse=True) and positions[-1:] in ([], [1])
        types = [e["type"] for e in result.events]
        assert types.index("ready") == len(positions)  # queued events first, then ready
    # first come, first served: the order of the places in line is the order of admission (stream
    # ids)
    admitted = sorted(queued, key=lambda r: r.positions[0])
    ids = [int(r.events[len(r.positions)]["stream_id"].lstrip("s")) for r in admitted]
    assert ids == sorted(ids)
    assert status["streams_admitted_after_wait"] == 20 and status["streams_waiting"] == 0
    assert status["streams_refused"] == 0 and status["streams_active"] == 0


async def start_stream(base: str) -> websockets.ClientConnection:
    connection = await websockets.connect(ws_url(base))
    await connection.send(json.dumps({"type": "start"}))
    return connection


async def next_event(connection: websockets.ClientConnection) -> dict:
    return json.loads(await connection.recv())


def test_leaving_the_line_frees_the_place_and_waiting_is_bounded(
    engine: Engine, en_clips: list[Clip]
) -> None:
    clip = shortest(en_clips, 1)[0]
    frames = pcm_frames(clip.path)

    async def leave(base: str) -> tuple[list[dict], list[dict], dict]:
        holder = await start_stream(base)
        assert (await next_event(holder))["type"] == "ready"
        second, third = await start_stream(base), await start_stream(base)
        told = [await next_event(second), await next_event(third)]
        await second.close()  # leaves the line: the third moves up
        told.append(await next_event(third))
        waiting = (await asyncio.to_thread(httpx.get, base + "/status")).json()["streams_waiting"]
        for frame in frames:
            await holder.send(frame)
        await holder.send(json.dumps({"type": "end"}))
        holder_events = await collect(holder)
        ready = await next_event(third)
        for frame in frames:
            await third.send(frame)
        await third.send(json.dumps({"type": "end"}))
        third_events = [ready, *await collect(third)]
        return (
            told + [{"waiting": waiting}],
            holder_events,
            {"events": third_events, "code": third.close_code},
        )

    async def wait_too_long(base: str) -> tuple[int, str, list[dict]]:
        holder = await start_stream(base)
        assert (await next_event(holder))["type"] == "ready"
        late = await start_stream(base)
        events = await collect(late)
        await holder.close()
        return late.close_code, late.close_reason, events

    with running(engine, max_streams=1, max_wait_s=300) as base:
        told, holder_events, third = asyncio.run(leave(base))
    assert told == [
        {"type": "queued", "position": 1, "eta_s": None},
        {"type": "queued", "position": 2, "eta_s": None},
        {"type": "queued", "position": 1, "eta_s": None},
        {"waiting": 1},
    ]
    assert holder_events[-1]["type"] == "stats" and third["code"] == 1000
    assert third["events"][0]["type"] == "ready"
    assert (
        wer(clip.reference, " ".join(e["text"] for e in third["events"] if e["type"] == "final"))
        < 0.35
    )
    with running(engine, max_streams=1, max_wait_s=1.0) as base:
        code, reason, events = asyncio.run(wait_too_long(base))
        refused = httpx.get(base + "/status").json()["streams_refused"]
    assert code == 1013 and "no place within 1 s" in reason and refused == 1
    assert events == [
        {"type": "queued", "position": 1, "eta_s": None},
        {"type": "error", "message": reason},
    ]


def test_a_session_waits_in_the_same_line_its_viewers_and_publisher_told(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = shortest(en_clips, 1)[0]
    frames = pcm_frames(clip.path)

    async def scenario(base: str) -> tuple[dict, list[dict], list[dict]]:
        holder = await start_stream(base)
        assert (await next_event(holder))["type"] == "ready"
        created = (
            await asyncio.to_thread(httpx.post, base + "/v1/sessions", json={"source": "publish"})
        ).json()
        socket = base.replace("http://", "ws://") + f"/v1/sessions/{created['id']}"
        viewer = await websockets.connect(socket + "/captions")
        publisher = await websockets.connect(socket + "/publish")
        await publisher.send(json.dumps({"type": "start"}))
        told = await next_event(publisher)
        await holder.close()  # the place frees: the session takes it
        ready = await next_event(publisher)
        for frame in frames:
            await publisher.send(frame)
        await publisher.send(json.dumps({"type": "end"}))
        await collect(publisher)
        return created, [told, ready], await collect(viewer)

    with running(engine, data_dir=tmp_path, max_streams=1, max_wait_s=300) as base:
        created, publisher, viewer = asyncio.run(scenario(base))
    assert created["state"] == "queued" and created["queue_position"] == 1
    assert (
        publisher[0] == {"type": "queued", "position": 1, "eta_s": None}
        and publisher[1]["type"] == "ready"
    )
    assert viewer[0]["type"] == "ready" and viewer[0]["session"]["state"] == "queued"
    assert wer(clip.reference, " ".join(e["text"] for e in viewer if e["type"] == "final")) < 0.35
    assert viewer[-1] == {"type": "end", "reason": "the publisher ended the stream"}


def test_uploads_wait_for_a_place_instead_of_503(engine: Engine, en_clips: list[Clip]) -> None:
    chosen = shortest(en_clips, 3)
    with running(engine, max_uploads=1, max_wait_s=300) as base:
        texts: dict[int, str] = {}

        def upload(index: int) -> None:
            with chosen[index].path.open("rb") as audio:
                response = httpx.post(
                    base + "/v1/audio/transcriptions", files={"file": audio}, timeout=300
                )
            assert response.status_code == 200, response.text
            texts[index] = response.json()["text"]

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(chosen))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        status = httpx.get(base + "/status").json()
    assert sorted(texts) == [0, 1, 2] and all(
        wer(c.reference, texts[i]) < 0.35 for i, c in enumerate(chosen)
    )
    assert status["uploads_refused"] == 0 and status["uploads_total"] == 3


def test_a_streamed_upload_in_line_is_told_its_place_then_transcribed(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    """`--max-uploads 1`: a long upload holds the place; a streamed one that leaves the line once
    told its place frees it; another (the openai client, which passes the unknown event through)
    gets `queued` while /status lists the line, and once the first client leaves it is
    transcribed."""
    import openai

    clip = shortest(en_clips, 1)[0]
    long = long_recording(tmp_path)
    with running(engine, max_uploads=1, max_wait_s=300) as base:
        holder = start_upload(base, long)
        status_when(base, lambda s: s["uploads_active"] == 1)
        url, files = base + "/v1/audio/transcriptions", {"file": clip.path.read_bytes()}
        with httpx.stream("POST", url, files=files, data={"stream": "true"}) as leaving:
            told = json.loads(next(leaving.iter_lines()).removeprefix("data: "))
        assert told == {"type": "queued", "position": 1, "eta_s": None}
        status_when(base, lambda s: s["uploads_waiting"] == 0)  # it left the line
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        events, lines = [], []
        with holder, clip.path.open("rb") as audio:
            for event in client.audio.transcriptions.create(
                model="whisper-1", file=audio, stream=True
            ):
                events.append(event)
                if event.type == "queued" and not lines:
                    lines.append(httpx.get(base + "/status").json())
                    holder.close()  # the place comes free
        status = httpx.get(base + "/status").json()
    assert (events[0].type, events[0].position) == ("queued", 1)  # type: ignore[attr-defined]
    assert lines[0]["uploads_waiting"] == 1
    assert [w["position"] for w in lines[0]["uploads_line"]] == [1]
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    kinds = ["queued"] + ["transcript.text.delta"] * len(deltas) + ["transcript.text.done"]
    assert [e.type for e in events] == kinds
    assert "".join(d.delta for d in deltas) == events[-1].text
    assert wer(clip.reference, events[-1].text) < 0.35
    assert status["uploads_active"] == 0 and status["uploads_line"] == []
    assert status["uploads_abandoned"] >= 1


# -- workers that heal -----------------------------------------------------------------------------


class Faulty:
    """The real backend, with faults on the finals of one stream (the one whose start message gives
    the prompt MARK): its second final raises on every call and its third hangs on its first call.
    A test wrapper around the real model, not a switch in the product."""

    MARK = "Quilter"

    def __init__(self, backend: object) -> None:
        self.backend = backend
        for name in ("name", "device", "compute_type", "multilingual"):
            setattr(self, name, getattr(backend, name))
        self.calls: dict[int, int] = {}  # id(request) -> calls
        # the marked stream's final requests, in order of their first call; kept alive, so that a
        # later request cannot take a freed one's id
        self.order: list[AsrRequest] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    def transcribe(self, request: AsrRequest) -> AsrResult:
        if request.final and request.options.initial_prompt == self.MARK:
            with self._lock:
                if id(request) not in self.calls:
                    self.order.append(request)
                self.calls[id(request)] = self.calls.get(id(request), 0) + 1
                index = next(i for i, seen in enumerate(self.order) if seen is request)
                calls = self.calls[id(request)]
            if index == 1:
                raise RuntimeError("injected fault")
            if index == 2 and calls == 1:
                self.release.wait(120)
        return self.backend.transcribe(request)  # type: ignore[attr-defined]


@pytest.fixture
def faulty() -> Iterator[tuple[Engine, Faulty]]:
    with Engine(Config()) as healing:
        wrapper = Faulty(healing.backend)
        healing.pool.shutdown()
        healing.pool = AsrPool(wrapper, healing.pool.workers, hung_after_s=10.0)
        try:
            yield healing, wrapper
        finally:
            wrapper.release.set()


def test_a_raising_and_a_hung_call_fail_alone_and_the_workers_heal(
    faulty: tuple[Engine, Faulty], en_clips: list[Clip]
) -> None:
    engine, wrapper = faulty
    marked = shortest(en_clips, 4)
    other = shortest(en_clips, 5)[4]
    frames = [frame for clip in marked for frame in pcm_frames(clip.path, silence_s=1.5)]

    async def both() -> list[StreamResult]:
        return list(
            await asyncio.gather(
                stream_frames(
                    ws_url(base), frames, speed=1.0, start={"prompt": Faulty.MARK}, timeout=600
                ),
                stream_file(ws_url(base), other.path, speed=1.0, timeout=600),
            )
        )

    with running(engine) as base:
        hit, intact = asyncio.run(both())
        status = httpx.get(base + "/status").json()
    errors = [e for e in hit.events if e["type"] == "error"]
    assert (
        len(errors) == 1
        and "ASR failed" in errors[0]["message"]
        and "injected fault" in errors[0]["message"]
    )
    assert hit.close_code == 1000 and [f["seq"] for f in hit.finals] == list(range(len(hit.finals)))
    kept = [marked[0], *marked[2:]]  # the second utterance failed alone; the hung third was retried
    assert wer(" ".join(c.reference for c in kept), hit.text) < 0.35, hit.text
    own_captions(other, intact)
    assert not [e for e in intact.events if e["type"] == "error"]
    workers = status["asr_workers"]
    assert sum(w["failures"] for w in workers) == 2 and status["asr_retries"] == 2
    hung = [w for w in workers if w["hangs"]]
    assert hung and hung[0]["restarts"] >= 1 and all(w["state"] != "down" for w in workers)


# -- memory pressure -------------------------------------------------------------------------------


def test_a_memory_budget_forces_interims_off_and_every_final_still_comes(
    engine: Engine, en_clips: list[Clip]
) -> None:
    chosen = shortest(en_clips, 2)
    with running(engine, max_rss_mb=1) as base:  # always over: interims shed, one stream at a time
        results = streams(base, chosen)
        status = httpx.get(base + "/status").json()
    for clip, result in zip(chosen, results):
        own_captions(clip, result)
        assert not [e for e in result.events if e["type"] == "interim"]
    assert sorted(len(r.positions) for r in results) == [0, 1]  # the second waited for the first
    assert status["memory_pressure"] is True and status["interims_shed"] > 0
    assert engine.pool.shed_interims is False  # a stopped server leaves the shared engine as it was
