"""Shared sessions and the media library on a real server (loopback, real tiny.en, real speech):
uploads good, bad and too large; a file replayed at 1x to 20 viewers who all get the same finals;
late joiners; a stalled viewer; DELETE mid-session; a publisher that vanishes; the key on every
endpoint; client names never paths. The fan-out's bounds are also tested without a server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import websockets

from conftest import Clip
from fakes import wait_for
from livecap.bench.wer import wer
from livecap.closecodes import NO_SESSION, REJOIN
from livecap.config import Config
from livecap.engine import Engine
from livecap.server.client import pcm_frames
from livecap.server.live import Closing, Outbox
from livecap.server.media import display_name
from livecap.server.sessions import Fanout
from test_server import MIB, by_length, exchange, running

# -- without a server -----------------------------------------------------------------------------


def test_fanout_cuts_a_viewer_that_falls_behind_and_keeps_history() -> None:
    async def scenario() -> None:
        fanout = Fanout(history=3)
        reader, stalled = Outbox(max_kept=4), Outbox(max_kept=4)
        assert fanout.join(reader) == [] and fanout.join(stalled) == []
        got = []
        for n in range(6):
            fanout.publish({"type": "final", "seq": n, "text": f"w{n}"})
            fanout.publish({"type": "interim", "n": n})
            got += [await reader.get(), await reader.get()]
        assert [r["seq"] for r in got if r["type"] == "final"] == list(range(6))
        cut = [await stalled.get(), await stalled.get()]  # only the reason, then the close
        assert cut[0]["type"] == "error" and "too far behind" in cut[0]["message"]
        assert isinstance(cut[1], Closing) and cut[1].code == REJOIN
        assert fanout.dropped == 1 and stalled not in fanout.viewers
        late = Outbox(max_kept=4)
        assert [r["seq"] for r in fanout.join(late)] == [3, 4, 5]  # bounded history
        fanout.end(1000, "done")
        assert (await late.get())["type"] == "end" and (await late.get()).code == 1000
        after = Outbox(max_kept=4)
        assert len(fanout.join(after)) == 3 and (await after.get())["reason"] == "done"

    asyncio.run(scenario())


def test_client_file_names_are_shown_never_paths() -> None:
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\x\\talk.mp3") == "talk.mp3"
    assert display_name("a\x00b\nc.wav") == "abc.wav"
    assert display_name("") == "upload" and len(display_name("x" * 1000)) == 200


def test_terminal_clients_read_session_urls_and_show_each_final_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from livecap.cli.view import PlainView
    from livecap.cli.watch import Relay, Target

    monkeypatch.delenv("LIVECAP_API_KEY", raising=False)
    assert Target.parse("http://h:8000/abc") == Target("http://h:8000", "abc", None)
    assert Target.parse("h:8000/?watch=abc&api_key=k") == Target("http://h:8000", "abc", "k")
    assert Target.parse("wss://h/v1/sessions/abc/captions").base == "https://h"
    assert (
        Target.parse("https://h:1/x", api_key="k").socket("captions")
        == "wss://h:1/v1/sessions/x/captions"
    )
    assert Target.parse("http://h:8000").session is None
    out = io.StringIO()
    relay = Relay(PlainView(out), jsonl=False)
    final = {"type": "final", "start": 0.0, "end": 1.0, "text": "hello", "words": []}
    for seq in (0, 1, 0, 1, 2):  # a rejoin repeats the history
        relay.take({**final, "seq": seq})
    relay.take({"type": "end", "reason": "done"})
    assert out.getvalue().count("hello") == 3 and relay.ended == "done"


# -- a real server --------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def engine() -> Engine:
    with Engine(Config()) as shared:
        yield shared


def ws(base: str, path: str, key: str | None = None) -> str:
    return base.replace("http://", "ws://") + path + (f"?api_key={key}" if key else "")


def upload(
    base: str, path: Path, name: str | None = None, headers: dict | None = None
) -> httpx.Response:
    with path.open("rb") as handle:
        return httpx.post(
            base + "/v1/media",
            files={"file": (name or path.name, handle)},
            headers=headers,
            timeout=60,
        )


def session_of(base: str, clip: Clip, **extra: object) -> dict:
    media = upload(base, clip.path).json()["id"]
    created = httpx.post(base + "/v1/sessions", json={"media": media, **extra}, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()


def finals(events: list[dict]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "final"]


@pytest.mark.slow
def test_media_upload_good_bad_oversized_and_deleted(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = by_length(en_clips, 1)[0]
    bad = tmp_path / "noise.mp3"
    bad.write_bytes(b"ID3" + bytes(range(256)) * 40)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 50)
    with running(
        engine, data_dir=tmp_path / "data", max_upload_mb=(clip.path.stat().st_size + 1000) / MIB
    ) as base:
        good = upload(base, clip.path, name="../../escape.wav")
        assert good.status_code == 201, good.text
        item = good.json()
        assert item["name"] == "escape.wav" and item["format"] == "wav"
        assert abs(item["duration"] - clip.duration) < 0.2
        stored = sorted(p.name for p in (tmp_path / "data" / "media").iterdir())
        # the server's name, not the client's
        assert stored == [f"{item['id']}.json", f"{item['id']}.media"]
        assert (
            not (tmp_path / "escape.wav").exists()
            and not (tmp_path / "data" / "escape.wav").exists()
        )
        for path in (bad, text):
            refused = upload(base, path)
            message = refused.json()["error"]["message"]
            assert refused.status_code == 400 and "not a readable audio" in message, refused.text
            assert str(tmp_path) not in refused.text
        big = tmp_path / "big.wav"
        big.write_bytes(clip.path.read_bytes() + b"\0" * 100_000)
        assert upload(base, big).status_code == 413
        assert (
            httpx.post(
                base + "/v1/media", content=b"x", headers={"content-type": "text/plain"}
            ).status_code
            == 400
        )
        listed = httpx.get(base + "/v1/media").json()["data"]
        assert [m["id"] for m in listed] == [item["id"]]
        for wrong in ("..%2F..%2Fetc%2Fpasswd", "0123456789abcdef", item["id"] + ".json"):
            assert httpx.delete(base + f"/v1/media/{wrong}").status_code == 404
        assert httpx.delete(base + f"/v1/media/{item['id']}").status_code == 200
        assert httpx.get(base + "/v1/media").json()["data"] == []
        assert list((tmp_path / "data" / "media").iterdir()) == []


@pytest.mark.slow
def test_media_session_with_20_viewers_and_a_late_joiner(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = by_length(en_clips, 1)[0]
    with running(engine, data_dir=tmp_path) as base:
        session = session_of(base, clip, language="en")
        assert session["source"] == "media" and session["model"] == engine.config.asr.model
        url = ws(base, f"/v1/sessions/{session['id']}/captions")

        async def watchers() -> list[tuple[int, str, list[dict]]]:
            early = [asyncio.create_task(exchange(url, [])) for _ in range(20)]
            while not httpx.get(base + f"/v1/sessions/{session['id']}").json()["finals"]:
                await asyncio.sleep(0.2)
            late = asyncio.create_task(exchange(url, []))  # joins after the first final
            return await asyncio.gather(*early, late)

        results = asyncio.run(watchers())
        info = httpx.get(base + f"/v1/sessions/{session['id']}").json()
        after = asyncio.run(exchange(url, []))  # the session has ended: its history, then the end
        assert httpx.get(base + "/status").json()["streams_active"] == 0
    first = finals(results[0][2])
    assert wer(clip.reference, " ".join(first)) < 0.35, first
    for code, reason, events in results:
        assert code == 1000 and reason == "the media file ended"
        assert events[0]["type"] == "ready" and events[-1] == {
            "type": "end",
            "reason": "the media file ended",
        }
        assert finals(events) == first
        seqs = [e["seq"] for e in events if e["type"] == "final"]
        assert seqs == sorted(seqs)
    late_events = results[-1][2]
    assert late_events[0]["history"] >= 1 and late_events[1]["type"] == "final"  # history first
    assert info["state"] == "ended" and info["viewers_total"] == 21 and info["viewers_dropped"] == 0
    assert info["final_latency_p50"] is not None and abs(info["position"] - clip.duration) < 0.5
    assert after[0] == 1000 and finals(after[2]) == first


@pytest.mark.slow
def test_stalled_viewer_is_dropped_without_affecting_the_others(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = by_length(en_clips, 1)[0]
    with running(engine, data_dir=tmp_path, ping_s=1.0) as base:
        session = session_of(base, clip)
        path = f"/v1/sessions/{session['id']}/captions"
        host, port = base.removeprefix("http://").split(":")
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((host, int(port)))
        stalled.sendall(  # a handshake, then never a read: no pong to the server's pings
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

        async def scenario() -> tuple[list[tuple[int, str, list[dict]]], dict, dict]:
            others = [asyncio.create_task(exchange(ws(base, path), [])) for _ in range(3)]
            async with httpx.AsyncClient(base_url=base) as client:
                info = lambda: client.get(f"/v1/sessions/{session['id']}")  # noqa: E731
                while (with_stalled := (await info()).json())["viewers"] < 4:
                    await asyncio.sleep(0.05)
                while (without := (await info()).json())["viewers"] > 3:  # no pong for 1 s: closed
                    await asyncio.sleep(0.05)
            return await asyncio.gather(*others), with_stalled, without

        try:
            wait_for(
                lambda: httpx.get(base + f"/v1/sessions/{session['id']}").json()["viewers"] == 1, 60
            )
            results, with_stalled, without = asyncio.run(scenario())
            info = httpx.get(base + f"/v1/sessions/{session['id']}").json()
        finally:
            stalled.close()
    assert (
        with_stalled["state"] == without["state"] == "live"
        and without["position"] < clip.duration - 1
    )
    texts = [finals(events) for _, _, events in results]
    assert all(code == 1000 for code, _, _ in results) and texts[0] == texts[1] == texts[2]
    assert wer(clip.reference, " ".join(texts[0])) < 0.35
    assert info["viewers_total"] == 4 and info["viewers"] == 0
    assert info["final_latency_p50"] < 5.0 and info["dropped_audio_s"] == 0


@pytest.mark.slow
def test_delete_mid_session_ends_viewers_cleanly(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = max(en_clips, key=lambda c: c.duration)
    with running(engine, data_dir=tmp_path) as base:
        session = session_of(base, clip)
        url = ws(base, f"/v1/sessions/{session['id']}/captions")

        async def scenario() -> tuple[tuple[int, str, list[dict]], dict]:
            viewer = asyncio.create_task(exchange(url, []))
            await asyncio.sleep(3.0)
            async with httpx.AsyncClient() as client:
                stopped = (
                    await client.delete(base + f"/v1/sessions/{session['id']}", timeout=30)
                ).json()
            return await viewer, stopped

        (code, reason, events), stopped = asyncio.run(scenario())
        # no longer in use
        assert httpx.delete(base + f"/v1/media/{session['media']}").status_code == 200
        assert httpx.get(base + "/status").json()["streams_active"] == 0
    assert stopped["state"] == "ended" and stopped["end_reason"] == "the session was stopped"
    assert stopped["position"] < clip.duration - 2
    assert code == 1000 and reason == "the session was stopped"
    assert events[-1] == {"type": "end", "reason": "the session was stopped"}


@pytest.mark.slow
def test_publisher_feeds_viewers_and_its_vanishing_ends_the_session(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = by_length(en_clips, 1)[0]
    frames = pcm_frames(clip.path, silence_s=2.0)
    with running(engine, data_dir=tmp_path) as base:
        created = httpx.post(base + "/v1/sessions", json={"source": "publish"})
        assert created.status_code == 201 and created.json()["state"] == "waiting"
        sid = created.json()["id"]

        async def scenario() -> tuple[list, list[dict]]:
            viewers = [
                asyncio.create_task(exchange(ws(base, f"/v1/sessions/{sid}/captions"), []))
                for _ in range(2)
            ]
            publisher = await websockets.connect(ws(base, f"/v1/sessions/{sid}/publish"))
            await publisher.send(
                '{"type": "start", "sample_rate": 16000, "sample_format": "s16le"}'
            )
            heard: list[dict] = []
            t0 = time.monotonic()
            for index, frame in enumerate(frames):
                await asyncio.sleep(max(0.0, t0 + index * 0.1 - time.monotonic()))
                await publisher.send(frame)
            while time.monotonic() < t0 + len(frames) * 0.1 + 3:  # its own captions come back too
                try:
                    heard.append(json.loads(await asyncio.wait_for(publisher.recv(), 0.5)))
                except asyncio.TimeoutError:
                    pass
            second = await websockets.connect(ws(base, f"/v1/sessions/{sid}/publish"))
            refused = await exchange_close(second)
            publisher.transport.abort()  # vanishes: no end, no close frame
            return [*(await asyncio.gather(*viewers)), refused], heard

        results, heard = asyncio.run(scenario())
        info = httpx.get(base + f"/v1/sessions/{sid}").json()
    *viewers, refused = results
    assert refused[0] == 1008 and "publisher" in refused[1]
    assert heard[0]["type"] == "ready" and finals(heard)
    for code, reason, events in viewers:
        assert code == 1000 and reason == "the publisher disconnected"
        assert events[-1] == {"type": "end", "reason": "the publisher disconnected"}
        assert wer(clip.reference, " ".join(finals(events))) < 0.35
    assert info["state"] == "ended" and info["end_reason"] == "the publisher disconnected"


async def first_event(url: str) -> dict:
    async with websockets.connect(url) as connection:
        return json.loads(await connection.recv())


async def exchange_close(connection: websockets.ClientConnection) -> tuple[int, str]:
    try:
        async for _ in connection:
            pass
    except websockets.ConnectionClosed:
        pass
    return connection.close_code, connection.close_reason


@pytest.mark.slow
def test_session_requests_are_checked(engine: Engine, en_clips: list[Clip], tmp_path: Path) -> None:
    with running(
        engine, data_dir=tmp_path, max_streams=1, max_wait_s=0, idle_timeout_s=1.0
    ) as base:
        post = lambda body: httpx.post(base + "/v1/sessions", json=body)  # noqa: E731
        assert post({"media": "0123456789abcdef"}).status_code == 404
        assert post({"media": "../../etc/passwd"}).status_code == 404
        assert post({}).status_code == 400
        assert post({"source": "publish", "colour": "red"}).status_code == 400
        # tiny.en is English-only
        assert post({"media": "0123456789abcdef", "language": "de"}).status_code == 400
        # the publisher's start says
        assert post({"source": "publish", "language": "en"}).status_code == 400
        assert post({"source": "publish", "translate_to": "fr"}).status_code == 400
        assert post({"source": "publish", "model": "nonesuch"}).status_code == 404
        assert httpx.post(base + "/v1/sessions", content=b"{nope").status_code == 400
        assert httpx.post(base + "/v1/sessions", content=b"[" * 20_000).status_code == 413
        first = post({"source": "publish"})
        assert first.status_code == 201
        status = httpx.get(base + "/status").json()
        assert (status["sessions_active"], status["streams_active"], status["viewers"]) == (1, 1, 0)
        assert post({"source": "publish"}).status_code == 503  # the one slot is taken
        wait_for(
            lambda: (
                httpx.get(base + f"/v1/sessions/{first.json()['id']}").json()["state"] == "ended"
            ),
            60,
        )
        assert (
            "no publisher connected"
            in httpx.get(base + f"/v1/sessions/{first.json()['id']}").json()["end_reason"]
        )
        assert post({"source": "publish"}).status_code == 201  # the slot is free again
        code, reason, events = asyncio.run(exchange(ws(base, "/v1/sessions/nope/captions"), []))
        assert code == NO_SESSION and events == [{"type": "error", "message": "no such session"}]
        assert httpx.get(base + "/v1/sessions/nope").status_code == 404


@pytest.mark.slow
def test_key_guards_every_session_endpoint(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = by_length(en_clips, 1)[0]
    key = {"Authorization": "Bearer s3cret"}
    with running(engine, data_dir=tmp_path, api_key="s3cret") as base:
        assert upload(base, clip.path).status_code == 401
        media = upload(base, clip.path, headers=key).json()["id"]
        for method, path in (
            ("GET", "/v1/media"),
            ("DELETE", f"/v1/media/{media}"),
            ("GET", "/v1/sessions"),
            ("POST", "/v1/sessions"),
            ("GET", "/v1/sessions/x"),
            ("DELETE", "/v1/sessions/x"),
        ):
            assert httpx.request(method, base + path).status_code == 401, path
        sid = httpx.post(base + "/v1/sessions", json={"source": "publish"}, headers=key).json()[
            "id"
        ]
        for path in (f"/v1/sessions/{sid}/captions", f"/v1/sessions/{sid}/publish"):
            code, _, _ = asyncio.run(exchange(ws(base, path), []))
            assert code == 1008, path
            code, _, events = asyncio.run(exchange(ws(base, path, "wrong"), []))
            assert code == 1008 and "key" in events[0]["message"]
        assert (
            asyncio.run(first_event(ws(base, f"/v1/sessions/{sid}/captions", "s3cret")))["type"]
            == "ready"
        )
        assert httpx.delete(base + f"/v1/sessions/{sid}", headers=key).json()["state"] == "ended"
        assert httpx.delete(base + f"/v1/media/{media}", headers=key).status_code == 200


@pytest.mark.slow
def test_terminal_publisher_and_watcher(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    """`livecap mic --publish` from a real input device (a private PulseAudio) and `livecap watch`,
    as processes, against a real server."""
    from pulse import pulse_server

    clip = by_length(en_clips, 1)[0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with running(engine, data_dir=tmp_path / "data") as base, ExitStack() as stack:
        try:
            pulse = stack.enter_context(pulse_server(tmp_path / "pulse"))
        except RuntimeError as error:
            pytest.skip(f"PulseAudio cannot start here: {error}")
        mic = subprocess.Popen(
            [
                sys.executable, "-m", "livecap", "mic", "--input-device", "pulse", "--publish",
                base, "--plain", "--duration", f"{clip.duration + 4:.1f}",
            ],
            env={**pulse.env, "HF_HUB_OFFLINE": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert mic.stderr is not None
        announced = mic.stderr.readline()
        assert "publishing" in announced, announced + mic.stderr.read()
        session = announced.split("to session ")[1].split(";")[0]
        watcher = subprocess.Popen(
            [sys.executable, "-m", "livecap", "watch", f"{base}/{session}", "--plain"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: httpx.get(base + f"/v1/sessions/{session}").json()["viewers"] == 1, 60)
        pulse.play(clip.path).wait(timeout=60)
        published, mic_errors = mic.communicate(timeout=120)
        watched, watch_errors = watcher.communicate(timeout=60)
        unknown = subprocess.run(
            [sys.executable, "-m", "livecap", "watch", f"{base}/nope"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert unknown.returncode == 1 and "no such session" in unknown.stderr
    assert mic.returncode == 0, mic_errors
    assert watcher.returncode == 0 and "the publisher ended the stream" in watch_errors, (
        watch_errors
    )
    lines = [line.split("] ", 1)[1] for line in watched.splitlines() if "] " in line]
    assert lines == [line.split("] ", 1)[1] for line in published.splitlines() if "] " in line]
    assert wer(clip.reference, " ".join(lines)) < 0.35, watched


@pytest.mark.slow
def test_shutdown_ends_sessions_and_tells_their_viewers(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = max(en_clips, key=lambda c: c.duration)
    results: dict[str, tuple[int, str, list[dict]]] = {}

    def watch(name: str, url: str) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.update({name: asyncio.run(exchange(url, []))})
        )
        thread.start()
        return thread

    with running(engine, data_dir=tmp_path, drain_s=5.0) as base:
        replayed = session_of(base, clip)["id"]
        waiting = httpx.post(base + "/v1/sessions", json={"source": "publish"}).json()["id"]
        threads = [
            watch(sid, ws(base, f"/v1/sessions/{sid}/captions")) for sid in (replayed, waiting)
        ]
        wait_for(lambda: httpx.get(base + f"/v1/sessions/{replayed}").json()["finals"] >= 1, 60)
        assert httpx.get(base + f"/v1/sessions/{waiting}").json()["viewers"] == 1
    for thread in threads:
        thread.join(timeout=30)
    for sid in (replayed, waiting):
        code, reason, events = results[sid]
        assert (code, reason) == (1001, "server shutting down"), sid
        assert events[-1] == {"type": "end", "reason": "server shutting down"}
    assert finals(results[replayed][2])  # what was heard before the shutdown


@pytest.mark.slow
def test_delete_ends_a_quiet_publisher_at_once(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    frames = pcm_frames(by_length(en_clips, 1)[0].path)[:20]
    with running(engine, data_dir=tmp_path) as base:
        sid = httpx.post(base + "/v1/sessions", json={"source": "publish"}).json()["id"]

        async def scenario() -> tuple[tuple[int, str], tuple[int, str, list[dict]]]:
            viewer = asyncio.create_task(exchange(ws(base, f"/v1/sessions/{sid}/captions"), []))
            publisher = await websockets.connect(ws(base, f"/v1/sessions/{sid}/publish"))
            await publisher.send('{"type": "start"}')
            for frame in frames:  # 2 s of audio, then nothing (the idle limit is 30 s)
                await publisher.send(frame)
            async with httpx.AsyncClient() as client:
                await client.delete(base + f"/v1/sessions/{sid}", timeout=60)
            return await exchange_close(publisher), await viewer

        published, (code, reason, events) = asyncio.run(scenario())
    # ended by the DELETE, not by the idle limit (30 s) or the stream's; how soon: `livecap bench
    # --streams`
    assert published == (1000, "the session was stopped")
    assert (code, reason) == (1000, "the session was stopped") and events[-1]["type"] == "end"
