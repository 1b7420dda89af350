"""`livecap serve`: a real server on loopback (uvicorn, real tiny.en, real speech) driven by real
clients: WebSocket streams, the official openai client, plain HTTP; limits, auth, capacity, a
client that vanishes, and SIGTERM draining a server process. The protocol pieces that need no
server (start message, frames, the send queue, PushSource) are tested without one."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from fastapi import FastAPI

from conftest import IDLE_LOAD, REPO, Clip, long_recording
from livecap.bench.streams import free_port, start_upload
from livecap.bench.wer import wer
from livecap.cli.view import JsonlView
from livecap.config import Config, ServerConfig
from livecap.engine import Engine
from livecap.messages import Caption, InterimCaption, StreamEnd, StreamError
from livecap.pipeline.runner import run_stream
from livecap.pipeline.stats import StatsSnapshot, StreamStats
from livecap.pipeline.stream import Stream
from livecap.server.app import create_app
from livecap.server.client import pcm_frames, stream_file, stream_frames
from livecap.server.live import Closing, Outbox, RecordFeed, decode_frame, parse_start
from livecap.server.run import make_server
from livecap.sources.file import probe_duration
from livecap.sources.push import PushSource
from livecap.sources.queue import CaptureQueue, EndOfAudio

MIB = 1024 * 1024


# -- without a server -----------------------------------------------------------------------------


def test_start_message_is_checked() -> None:
    start = parse_start(
        '{"type": "start", "sample_rate": 48000, "sample_format": "f32le", "language": "EN"}',
        False,
        "tiny.en",
    )
    assert (start.sample_rate, start.sample_format, start.decode.language) == (48000, "f32le", "en")
    cases = {
        "not json": 1007,
        '["start"]': 1007,
        '{"type": "begin"}': 1007,
        '{"type": "start", "sample_format": "s24le"}': 1003,
        '{"type": "start", "sample_rate": 100}': 1003,
        '{"type": "start", "sample_rate": "16000"}': 1003,
        '{"type": "start", "language": "xx"}': 1007,
        '{"type": "start", "language": "de"}': 1007,  # tiny.en is English-only
        '{"type": "start", "task": "translate"}': 1007,
        '{"type": "start", "prompt": 5}': 1007,
    }
    for text, code in cases.items():
        with pytest.raises(Closing) as raised:
            parse_start(text, False, "tiny.en")
        assert raised.value.code == code and raised.value.reason, text


def test_frames_are_checked() -> None:
    assert np.allclose(
        decode_frame(np.array([16384, -32768], "<i2").tobytes(), "s16le"), [0.5, -1.0]
    )
    assert np.allclose(decode_frame(np.array([0.25], "<f4").tobytes(), "f32le"), [0.25])
    for data, fmt in (
        (b"\x00\x01\x02", "s16le"),
        (b"\x00" * 6, "f32le"),
        (np.array([np.nan], "<f4").tobytes(), "f32le"),
        (np.array([1e30], "<f4").tobytes(), "f32le"),
    ):
        with pytest.raises(Closing) as raised:
            decode_frame(data, fmt)
        assert raised.value.code == 1007


class _ScriptedStream:
    """Hands out a fixed list of events, as
    `Stream.next_event` would (a unit test of the switch)."""

    stream_id = "s1"

    def __init__(self, events: list[object]) -> None:
        self.events = events
        self.stats = StreamStats()

    def start(self) -> None:
        pass

    def stop(self, reason: str | None = None) -> None:
        pass

    def next_event(self, timeout: float = 0.1) -> object:
        return self.events.pop(0)

    def stats_snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot(**IDLE_LOAD)


def test_the_server_feed_is_a_display_of_the_run_loop() -> None:
    t = {"speech_end": 1.0, "emitted": 1.5, "asr_start": 1.6, "asr_end": 1.9, "shown": 2.0}
    caption = Caption("s1", 0, 0.0, 1.0, "hello", True, timings=t, utterance=0)
    interim = InterimCaption("s1", 0, "hel", "lo", 2, t_audio_end=1.0, audio_end=0.9)
    stream = _ScriptedStream([interim, None, caption, StreamError("ASR failed"), StreamEnd()])
    latencies: list[float] = []
    hub = type("HubStub", (), {"record_final": staticmethod(latencies.append)})()
    posted: list[dict] = []
    done: list[bool] = []
    feed = RecordFeed(hub, posted.append, lambda: {"interims_unsent": 0}, lambda: done.append(True))  # type: ignore[arg-type]
    result = run_stream(stream, feed, keep=False)  # type: ignore[arg-type]
    records = [r for r in posted if r["type"] != "stats"]  # stats come every 2 s, and at the end
    assert [r["type"] for r in records] == ["interim", "final", "error"] and posted[-1][
        "type"
    ] == "stats"
    assert (
        records[1]["text"] == "hello"
        and records[1]["latency"]["latency"] == 1.0
        and latencies == [1.0]
    )
    assert posted[-1]["interims_unsent"] == 0 and done == [True]
    assert result.captions == [] and result.errors == ["ASR failed"]  # a server keeps no captions


def test_jsonl_lines_and_the_server_feed_carry_the_same_records() -> None:
    def events() -> list[object]:
        t = {"speech_end": 1.0, "emitted": 1.5, "asr_start": 1.6, "asr_end": 1.9, "shown": 2.0}
        caption = Caption("s1", 0, 0.0, 1.0, "hello", True, timings=t, utterance=0)
        interim = InterimCaption("s1", 0, "hel", "lo", 2, t_audio_end=1.0, audio_end=0.9)
        return [interim, caption, StreamError("ASR failed"), StreamEnd()]

    out = io.StringIO()
    run_stream(_ScriptedStream(events()), JsonlView(out, source="a.wav"), keep=False)  # type: ignore[arg-type]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    hub = type("HubStub", (), {"record_final": staticmethod(lambda latency: None)})()
    posted: list[dict] = []
    feed = RecordFeed(hub, posted.append, lambda: {"interims_unsent": 0}, lambda: None)  # type: ignore[arg-type]
    run_stream(_ScriptedStream(events()), feed, keep=False)  # type: ignore[arg-type]
    assert (
        [r["type"] for r in lines]
        == [r["type"] for r in posted]
        == ["interim", "final", "error", "stats"]
    )
    assert all(r.pop("source") == "a.wav" for r in lines)
    assert lines[1:3] == posted[1:3]  # the final (with its latency) and the error, field for field
    # an interim's latency is its age
    assert {**lines[0], "latency": 0} == {**posted[0], "latency": 0}
    assert set(posted[3]) - set(lines[3]) == {"interims_unsent"}  # the server adds its own figure


def test_outbox_sheds_interims_never_finals() -> None:
    async def fill() -> list[dict]:
        box = Outbox(max_kept=3)
        for i in range(100):
            box.put({"type": "interim", "n": i})
        box.put({"type": "final", "n": 0})
        box.put({"type": "interim", "n": 100})
        box.put({"type": "final", "n": 1})
        box.put({"type": "stats", "n": 0})
        box.put({"type": "final", "n": 2})
        with pytest.raises(Closing) as raised:
            box.put({"type": "final", "n": 3})
        assert raised.value.code == 1008
        assert box.replaced == 100
        return [await box.get() for _ in range(5)]

    sent = asyncio.run(fill())
    assert sent == [
        {"type": "final", "n": 0},
        {"type": "interim", "n": 100},
        {"type": "final", "n": 1},
        {"type": "stats", "n": 0},
        {"type": "final", "n": 2},
    ]


def test_push_source_cuts_blocks_and_flushes_the_rest() -> None:
    source = PushSource(8000)
    sink = CaptureQueue(max_blocks=100)
    source.start(sink)
    source.push(np.ones(1000, np.float32))  # 1.25 blocks of 100 ms at 8 kHz
    source.push(np.ones(1000, np.float32))
    source.end()
    source.push(np.ones(800, np.float32))  # after the end: ignored
    sizes = []
    while not isinstance(item := sink.get(0.1), EndOfAudio):
        sizes.append(len(item.samples))
    assert sizes == [800, 800, 400] and sink.captured_samples == 2000
    assert source.converter() is not None and PushSource(16000).converter() is None


# -- the HTTP layer, with a plain app (no model) on loopback
# ----------------------------------------


def _half_sent(
    base: str, head: bytes = b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n"
) -> socket.socket:
    """A connection that sends `head` and never the blank line that ends it."""
    host, port = base.removeprefix("http://").split(":")
    # the timeout only guards against a hang
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(head)
    return sock


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    with sock:
        while chunk := sock.recv(4096):
            received += chunk
    return received


def _plain_app() -> FastAPI:
    app = FastAPI()
    app.get("/ok")(lambda: {"ok": True})
    return app


def test_connections_still_sending_their_headers_are_counted() -> None:
    """Real sockets: while `max_pending_headers` connections have sent half a request head, a new
    one is answered 503 and closed at once; once they go, whole requests are served again."""
    with serving(_plain_app(), ServerConfig(port=0, max_pending_headers=3)) as base:
        # accepted in order: the fourth finds three pending
        held = [_half_sent(base) for _ in range(3)]
        # sends nothing: a close before its bytes are read is a reset
        refused = _until_closed(_half_sent(base, b""))
        assert refused.startswith(b"HTTP/1.1 503 ") and refused.endswith(
            b"still sending their headers"
        ), refused
        for sock in held:
            sock.close()
        for _ in range(300):  # the server notices the closes on its own loop
            if (answer := httpx.get(base + "/ok")).status_code != 503:
                break
            time.sleep(0.05)
        assert answer.status_code == 200 and answer.json() == {"ok": True}


@pytest.mark.slow
def test_a_request_head_that_never_ends_is_closed_with_408() -> None:
    """Real sockets: a connection that sends nothing, one that sends half a head, and a
    kept-alive one that sends half of its second request (pipelined behind a whole first one)
    are answered 408 and closed. Those that send get time to do it first: a close before
    their bytes are read is a reset."""
    with serving(_plain_app(), ServerConfig(port=0, header_timeout_s=0.3)) as base:
        answer = _until_closed(_half_sent(base, b""))
        assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(b"longer than 0.3 s"), answer
    with serving(_plain_app(), ServerConfig(port=0, header_timeout_s=2.0)) as base:
        half = _half_sent(base, b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        kept = _half_sent(base, b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /ok HTTP/1.1\r\n")
        late, pipelined = _until_closed(half), _until_closed(kept)
    assert late.startswith(b"HTTP/1.1 408 ") and late.endswith(b"longer than 2 s"), late
    assert pipelined.startswith(b"HTTP/1.1 200 ") and b'{"ok":true}HTTP/1.1 408 ' in pipelined, (
        pipelined
    )


# -- a real server in this process ----------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with Engine(Config()) as shared:
        yield shared


@contextmanager
def serving(app: FastAPI, settings: ServerConfig) -> Iterator[str]:
    """`app` served on a free loopback port (settings.port 0); yields its http:// base URL."""
    server = make_server(app, settings, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def running(engine: Engine, **limits: object) -> Iterator[str]:
    """A server on a free loopback port sharing `engine`; yields its http:// base URL."""
    api_key = limits.pop("api_key", None)
    if "data_dir" in limits:
        limits["data_dir"] = str(limits["data_dir"])
    config = dataclasses.replace(engine.config, server=ServerConfig(port=0, **limits))  # type: ignore[arg-type]
    with serving(create_app(config, api_key=api_key, engine=engine), config.server) as base:  # type: ignore[arg-type]
        yield base


async def collect(ws: websockets.ClientConnection) -> list[dict]:
    """Every event until the server closes, whatever the close code."""
    events = []
    try:
        async for message in ws:
            events.append(json.loads(message))
    except websockets.ConnectionClosed:
        pass
    return events


async def exchange(url: str, messages: list[str | bytes]) -> tuple[int, str, list[dict]]:
    """Send `messages`, then collect events until the server
    closes: (close code, reason, events)."""
    ws = await websockets.connect(url)
    try:
        for message in messages:
            await ws.send(message)
    except websockets.ConnectionClosed:  # closed early: the events say why
        pass
    events = await collect(ws)
    try:
        await ws.close()
    except websockets.ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason, events


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/v1/stream" + query


def streams_active_settles(base: str) -> int:
    """Active streams once the server has finished with
    closed ones (a slot is freed just after the close)."""
    for _ in range(100):
        active = httpx.get(base + "/status").json()["streams_active"]
        if active == 0:
            break
        time.sleep(0.1)
    return active


def by_length(clips: list[Clip], count: int) -> list[Clip]:
    """`count` clips of 3-8 s: enough words to score, short enough to stream at 1x."""
    return sorted((c for c in clips if 3 <= c.duration <= 8), key=lambda c: c.duration)[-count:]


@pytest.mark.slow
def test_concurrent_streams_at_1x_get_their_own_transcripts(
    engine: Engine, en_clips: list[Clip]
) -> None:
    chosen = by_length(en_clips, 3)
    with running(engine) as base:
        results = asyncio.run(
            _gather(*(stream_file(ws_url(base), c.path, speed=1.0) for c in chosen))
        )
        status = httpx.get(base + "/status").json()
    stream_ids = set()
    for clip, result in zip(chosen, results):
        assert result.close_code == 1000, result.close_reason
        assert result.events[0]["type"] == "ready" and result.events[-1]["type"] == "stats"
        stream_ids.add(result.events[0]["stream_id"])
        assert [f["seq"] for f in result.finals] == list(range(len(result.finals)))
        assert not [e for e in result.events if e["type"] == "error"]
        assert wer(clip.reference, result.text) < 0.35, (clip.path.name, result.text)
        # each stream's own figures: its finals, nothing dropped (how long finals wait with others
        # streaming is timed by `livecap bench --streams`, worst p95: no wall-clock bound here)
        assert (
            result.stats["finals"] == len(result.finals) and result.stats["final_p95"] is not None
        )
        assert result.stats["dropped_seconds"] == 0
    assert len(stream_ids) == 3
    assert (
        status["streams_total"] == 3
        and status["streams_active"] == 0
        and status["final_latency_p50"] > 0
    )


async def _gather(*jobs):  # noqa: ANN002, ANN202 - any awaitables
    return await asyncio.gather(*jobs)


@pytest.mark.slow
def test_interims_show_committed_words_and_a_tail(engine: Engine, en_clips: list[Clip]) -> None:
    clip = by_length(en_clips, 1)[0]
    with running(engine) as base:
        result = asyncio.run(stream_file(ws_url(base), clip.path, speed=1.0))
    interims = [e for e in result.events if e["type"] == "interim"]
    assert interims and all(
        {"committed", "tail", "latency", "utterance"} <= e.keys() for e in interims
    )
    final = result.finals[0]
    assert final["words"] and "latency" in final and final["end"] > final["start"]


@pytest.mark.slow
def test_openai_client_unchanged(engine: Engine, en_clips: list[Clip]) -> None:
    import openai

    clip = by_length(en_clips, 1)[0]
    with running(engine) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        with clip.path.open("rb") as audio:
            plain = client.audio.transcriptions.create(model="whisper-1", file=audio)
        assert wer(clip.reference, plain.text) < 0.35
        with clip.path.open("rb") as audio:
            verbose = client.audio.transcriptions.create(
                model="tiny.en",
                file=audio,
                response_format="verbose_json",
                language="en",
                prompt="Quilter",
                timestamp_granularities=["word", "segment"],
            )
        assert verbose.segments and verbose.words and verbose.duration > 0
        assert verbose.words[0].start < verbose.words[-1].end <= verbose.duration + 0.5
        with clip.path.open("rb") as audio:
            srt = client.audio.transcriptions.create(
                model="whisper-1", file=audio, response_format="srt"
            )
        assert srt.startswith("1\n00:00:") and "-->" in srt
        with clip.path.open("rb") as audio:
            vtt = client.audio.transcriptions.create(
                model="whisper-1", file=audio, response_format="vtt"
            )
        assert vtt.startswith("WEBVTT")
        assert "tiny.en" in [m.id for m in client.models.list()]
        with (
            clip.path.open("rb") as audio,
            pytest.raises(openai.BadRequestError, match="English-only"),
        ):
            client.audio.translations.create(model="whisper-1", file=audio)
        with pytest.raises(openai.BadRequestError, match="not a readable audio"):
            client.audio.transcriptions.create(
                model="whisper-1", file=("talk.mp3", b"this is not audio" * 50)
            )
        with (
            clip.path.open("rb") as audio,
            pytest.raises(openai.NotFoundError, match="unknown model 'nonesuch'"),
        ):
            client.audio.transcriptions.create(model="nonesuch", file=audio)


@pytest.mark.slow
def test_api_key_guards_everything_but_health(engine: Engine, en_clips: list[Clip]) -> None:
    import openai

    clip = by_length(en_clips, 1)[0]
    with running(engine, api_key="s3cret") as base:
        assert httpx.get(base + "/health").status_code == 200
        for path in ("/status", "/metrics", "/v1/models", "/"):
            refused = httpx.get(base + path)
            assert (
                refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
            ), path
            assert (
                httpx.get(base + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            )
            assert (
                httpx.get(base + path, headers={"Authorization": "Bearer s3cret"}).status_code
                == 200
            ), path
        assert httpx.get(base + "/?api_key=s3cret").status_code == 200
        # code, no data: the page's modules
        assert httpx.get(base + "/static/main.js").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
        denied = asyncio.run(stream_file(ws_url(base), clip.path, speed=0))
        assert denied.close_code == 1008 and "API key" in denied.close_reason
        allowed = asyncio.run(stream_file(ws_url(base, "?api_key=s3cret"), clip.path, speed=0))
        assert allowed.close_code == 1000 and wer(clip.reference, allowed.text) < 0.35


@pytest.mark.slow
def test_upload_errors_are_json_with_their_status(engine: Engine, en_clips: list[Clip]) -> None:
    clip = by_length(en_clips, 1)[0]
    with running(engine, max_upload_mb=20_000 / MIB) as base:
        url = base + "/v1/audio/transcriptions"
        cases = [
            (
                httpx.post(
                    url, files={"file": ("a.wav", b"\0" * 200_000)}, data={"model": "whisper-1"}
                ),
                413,
                "limit",
            ),
            (
                httpx.post(
                    url,
                    content=b"\0" * 200_000,
                    headers={"content-type": "multipart/form-data; boundary=x"},
                ),
                413,
                "limit",
            ),
            (httpx.post(url, json={"file": "x"}), 400, "multipart"),
            (
                httpx.post(url, data={"model": "whisper-1"}, files={"other": ("a", b"1")}),
                400,
                "`file`",
            ),
            (
                httpx.post(
                    url, files={"file": ("a.wav", b"junk" * 100)}, data={"response_format": "xml"}
                ),
                400,
                "response_format",
            ),
            (
                httpx.post(url, files={"file": ("../../etc/passwd", b"junk" * 100)}),
                400,
                "the uploaded file",
            ),
            (
                httpx.post(url, files={"file": ("a.wav", b"junk")}, data={"language": "klingon"}),
                400,
                "language",
            ),
            (httpx.get(base + "/nowhere"), 404, "Not Found"),
        ]
        for response, status, words in cases:
            assert response.status_code == status, response.text
            error = response.json()["error"]
            assert words in error["message"] and error["type"], error
        small = httpx.post(url, files={"file": ("c.flac", clip.path.read_bytes()[:20_000])})
        # a cut file within the limit: transcribed or refused, never a crash
        assert small.status_code in (200, 400)


def calls_bound(status: dict) -> int:
    """The most ASR calls there can ever have been, as far as one /status knows: those done, and
    one on each worker busy now."""
    return sum(w["calls"] + (w["state"] == "busy") for w in status["asr_workers"])


def status_when(base: str, ready: Callable[[dict], object]) -> dict:
    """The first /status that is `ready` (polled; the bound only ends a test that would hang)."""
    for _ in range(6000):
        status = httpx.get(base + "/status", timeout=60).json()
        if ready(status):
            return status
        time.sleep(0.05)
    raise AssertionError("the server never got there")


@pytest.mark.slow
def test_abandoned_upload_stops_its_transcription(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that gives up once its upload is being transcribed: the server notices, stops that
    stream short of the end and withdraws what is queued of it, so after the stop the pool does
    only the calls that were running then (counted, not timed: `livecap bench --streams` times it)
    and frees the upload's slot."""
    long = long_recording(tmp_path)
    opened: list[Stream] = []
    open_stream = engine.stream
    monkeypatch.setattr(
        engine, "stream", lambda *a, **k: opened.append(open_stream(*a, **k)) or opened[-1]
    )
    with running(engine) as base:
        before = httpx.get(base + "/status").json()
        with start_upload(base, long):  # closed once a window of it is transcribed
            for _ in range(6000):
                if opened and opened[0].stats_snapshot().finals:
                    break
                time.sleep(0.05)
        stopped = status_when(base, lambda s: s["uploads_abandoned"] > before["uploads_abandoned"])
        status = status_when(base, lambda s: not s["uploads_active"])
    (stream,) = opened
    snapshot = stream.stats_snapshot()
    assert status["uploads_total"] - before["uploads_total"] == 1
    assert calls_bound(status) <= calls_bound(stopped)  # nothing of it started after the stop
    duration = probe_duration(long)
    # stopped short of the end
    assert duration and 0 < snapshot.transcribed_seconds < 0.9 * duration, snapshot
    assert snapshot.pending_finals == 0  # and nothing of it is left queued for the shared pool
    assert status["audio_seconds"] > before["audio_seconds"]  # the audio it took counts too


@pytest.mark.slow
def test_bad_stream_input_closes_with_a_reason(engine: Engine) -> None:
    start = json.dumps({"type": "start", "sample_rate": 16000, "sample_format": "s16le"})
    cases = [
        ([b"\0" * 3200], 1003, "start message"),
        (["{nope"], 1007, "JSON"),
        ([json.dumps({"type": "start", "sample_format": "mp3"})], 1003, "sample_format"),
        ([start, b"\0" * 70_000], 1009, "limit"),
        ([start, b"\0\0\0"], 1007, "s16le"),
        ([start, "hello"], 1007, '"end"'),
        (
            [
                json.dumps({"type": "start", "sample_format": "f32le"}),
                np.full(100, np.inf, "<f4").tobytes(),
            ],
            1007,
            "finite",
        ),
    ]

    with running(engine, max_frame_kb=64_000 / 1024) as base:
        for messages, code, words in cases:
            got_code, reason, events = asyncio.run(exchange(ws_url(base), messages))
            assert got_code == code and words in reason, (messages[-1][:20], got_code, reason)
            assert events[-1] == {"type": "error", "message": reason}
        assert streams_active_settles(base) == 0


@pytest.mark.slow
def test_idle_stream_is_ended_after_its_finals(engine: Engine, en_clips: list[Clip]) -> None:
    clip = by_length(en_clips, 1)[0]

    with running(engine, idle_timeout_s=2.0) as base:
        # the clip, then nothing more: idle
        code, reason, events = asyncio.run(
            exchange(ws_url(base), [json.dumps({"type": "start"}), *pcm_frames(clip.path)])
        )
    assert code == 1008 and reason.startswith("idle"), reason
    finals = " ".join(e["text"] for e in events if e["type"] == "final")
    assert wer(clip.reference, finals) < 0.35
    assert events[-2]["type"] == "stats" and events[-1] == {"type": "error", "message": reason}


@pytest.mark.slow
def test_a_client_that_never_starts_is_closed_as_idle(engine: Engine) -> None:
    with running(engine, idle_timeout_s=1.0) as base:
        code, reason, events = asyncio.run(exchange(ws_url(base), []))
        assert streams_active_settles(base) == 0
    assert code == 1008 and reason == "idle: nothing received for 1 s", reason
    assert events == [{"type": "error", "message": reason}]


@pytest.mark.slow
def test_stream_over_its_time_limit_ends_after_its_finals(
    engine: Engine, en_clips: list[Clip]
) -> None:
    clip = by_length(en_clips, 1)[0]
    with running(engine, max_stream_s=3.0) as base:
        result = asyncio.run(stream_file(ws_url(base), clip.path, speed=1.0))
    assert result.close_code == 1008 and "limit of 3 s" in result.close_reason
    assert result.finals and result.sent_seconds < clip.duration  # what was heard, then the end
    assert result.events[-2]["type"] == "stats" and result.events[-1] == {
        "type": "error",
        "message": result.close_reason,
    }


@pytest.mark.slow
def test_f32le_at_44_1_khz_is_resampled(engine: Engine, en_clips: list[Clip]) -> None:
    import soxr

    clip = by_length(en_clips, 1)[0]
    audio = np.frombuffer(b"".join(pcm_frames(clip.path)), "<i2").astype(np.float32) / 32768
    resampled = soxr.resample(audio, 16_000, 44_100).astype("<f4")
    frames = [resampled[i : i + 4410].tobytes() for i in range(0, len(resampled), 4410)]
    start = {"sample_rate": 44_100, "sample_format": "f32le"}
    with running(engine) as base:
        result = asyncio.run(stream_frames(ws_url(base), frames, speed=2.0, start=start))
    assert result.close_code == 1000 and wer(clip.reference, result.text) < 0.35, result.text


@pytest.mark.slow
def test_vanished_client_frees_its_slot_and_capacity_refuses_with_1013(
    engine: Engine, en_clips: list[Clip]
) -> None:
    frames = pcm_frames(by_length(en_clips, 1)[0].path)

    async def scenario(base: str) -> tuple[int, str, int]:
        first = await websockets.connect(ws_url(base))
        await first.send(json.dumps({"type": "start"}))
        assert json.loads(await first.recv())["type"] == "ready"
        for frame in frames[:20]:
            await first.send(frame)
        # over capacity
        code, reason, events = await exchange(ws_url(base), [json.dumps({"type": "start"})])
        assert events == [{"type": "error", "message": reason}]
        first.transport.abort()  # vanishes mid-stream: no close frame
        return code, reason, await asyncio.to_thread(streams_active_settles, base)

    with running(engine, max_streams=1, max_wait_s=0) as base:  # no waiting: refused at once
        code, reason, active = asyncio.run(scenario(base))
        status = httpx.get(base + "/status").json()
    assert code == 1013 and "capacity" in reason
    assert active == 0 and status["streams_refused"] == 1 and status["streams_max"] == 1


@pytest.mark.slow
def test_compute_per_audio_second_counts_translation_too(engine: Engine) -> None:
    """The status figure covers all the work: ASR worker-seconds and the translation done outside
    the pool, per second of audio taken."""
    from livecap.engine import open_models
    from livecap.pipeline.stats import StreamStats
    from livecap.server.hub import Hub

    hub = Hub(open_models(engine.config, engine=engine), ServerConfig())
    stats = StreamStats()
    stats.add_audio(20.0)
    stats.record_final({"latency": 1.0, "eos_wait": 0.5, "processing": 0.5, "translate": 3.0})
    assert hub.streams_line.take_now()
    hub.release_stream(stats.snapshot(**{**IDLE_LOAD, "transcribed_seconds": 20.0}))
    status = hub.status_report()
    assert status["audio_seconds"] == 20.0 and status["translate_seconds"] == 3.0
    assert status["compute_per_audio_s"] == pytest.approx(
        (engine.pool.busy_seconds + 3.0) / 20.0, abs=1e-3
    )


@pytest.mark.slow
def test_status_metrics_health_models_page(engine: Engine) -> None:
    with running(engine) as base:
        status = httpx.get(base + "/status").json()
        assert status["workers"] == engine.pool.workers and status["streams_limit"] == "auto"
        estimate = status["admission_estimate"]
        assert (
            status["streams_max"] == estimate["streams"] >= 1 and estimate["basis"] == "calibration"
        )
        assert estimate["finals_per_audio_s"] > 0 and estimate["interim_cost_s"] > 0
        assert [w["state"] for w in status["asr_workers"]] == ["idle"] * engine.pool.workers
        assert (
            status["rss_mb"] > 0 and status["max_rss_mb"] > 0 and status["memory_pressure"] is False
        )
        assert {
            "busy_seconds",
            "queued_finals",
            "queued_interims",
            "streams_refused",
            "final_latency_p95",
            "compute_per_audio_s",
            "uptime_s",
        } <= status.keys()
        metrics = httpx.get(base + "/metrics").text
        assert (
            "livecap_streams_active 0.0" in metrics
            and "livecap_final_latency_seconds_bucket" in metrics
        )
        assert f"livecap_admission_estimate_streams {float(estimate['streams'])}" in metrics
        assert 'livecap_asr_worker_restarts_total{worker="0"} 0.0' in metrics
        assert "livecap_streams_waiting 0.0" in metrics
        assert httpx.get(base + "/health").json() == {"status": "ok", "model": "tiny.en"}
        models = httpx.get(base + "/v1/models").json()["data"]
        assert [m["id"] for m in models if m["loaded"]] == ["tiny.en"]
        page = httpx.get(base + "/").text
        assert "<title>livecap</title>" in page and "{{" not in page
        # the page's ES modules: every one it imports, and the worklet, is served as JavaScript
        wanted, served = re.findall(r'src="(/static/[\w.]+\.js)"', page), {}
        while wanted:
            path = wanted.pop()
            if path not in served:
                script = httpx.get(base + path)
                assert script.status_code == 200 and script.headers["content-type"].startswith(
                    "text/javascript"
                )
                served[path] = script.text
                wanted += [
                    "/static/" + name for name in re.findall(r'from "\./([\w.]+\.js)"', script.text)
                ]
        assert {"/static/main.js", "/static/protocol.js", "/static/viewer.js"} <= served.keys()
        assert 'new URL("worklet.js", import.meta.url)' in served["/static/publisher.js"]
        assert "registerProcessor" in httpx.get(base + "/static/worklet.js").text
        for missing in ("/static/nothing.js", "/static/..%2Fapp.py", "/static/style.css"):
            assert httpx.get(base + missing).status_code == 404, missing


# -- a server process: SIGTERM drains
# ---------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_drains_open_streams_then_exits(en_clips: list[Clip]) -> None:
    clip = max(by_length(en_clips, 3), key=lambda c: c.duration)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "livecap", "serve", "--port", str(port), "--drain-s", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not start")

        async def stream_then_term() -> tuple[int, str, list[dict]]:
            async with websockets.connect(ws_url(base)) as ws:
                await ws.send(json.dumps({"type": "start"}))
                frames = pcm_frames(clip.path)
                for frame in frames:  # the whole clip at 4x, then SIGTERM before the end message
                    await ws.send(frame)
                    await asyncio.sleep(0.025)
                server.send_signal(signal.SIGTERM)
                events = await collect(ws)
                return ws.close_code, ws.close_reason, events

        code, reason, events = asyncio.run(stream_then_term())
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert code == 1001 and "shutting down" in reason
    finals = " ".join(e["text"] for e in events if e["type"] == "final")
    assert wer(clip.reference, finals) < 0.35, finals
    # the signal, once drained
    assert server.returncode == 143 and output.splitlines()[-1] == "interrupted", output
    assert "Traceback" not in output
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/health")
