"""The interfaces other apps already speak, over the same engine and stream code, each driven by its
real client library unchanged against a real server on loopback with real speech: OpenAI's streamed
transcription (server-sent events), Deepgram's live API (deepgram-sdk), OpenAI's Realtime
transcription (the openai client, GA and beta), and Opus in Ogg/WebM on /v1/stream. Malformed and
oversized input on each gets a clear error. The audio formats are tested without a server."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from conftest import Clip, long_recording, run_cli, speak
from livecap.bench.wer import wer
from livecap.config import Config
from livecap.engine import Engine
from livecap.server.client import pcm_frames, stream_frames
from livecap.server.live import Closing, decode_frame
from livecap.sources.codecs import ALAW, MULAW, ContainerDecoder, OggOpusEncoder, g711
from livecap.sources.file import decode_blocks
from livecap.sources.push import PushSource
from livecap.sources.queue import CaptureQueue, EndOfAudio
from test_server import by_length, collect, exchange, running, streams_active_settles

# -- without a server: the audio formats clients send
# ------------------------------------------------


def test_g711_tables_follow_the_standard() -> None:
    assert [round(float(x) * 32768) for x in g711(bytes([0xFF, 0x7F, 0x00, 0x80]), MULAW)] == [
        0,
        0,
        -32124,
        32124,
    ]
    assert [round(float(x) * 32768) for x in g711(bytes([0xD5, 0x55, 0xAA, 0x2A]), ALAW)] == [
        8,
        -8,
        32256,
        -32256,
    ]
    assert np.allclose(
        decode_frame(bytes([0x80, 0x00, 0x80, 0x00]), "mulaw", channels=2), [0.0, 0.0]
    )
    with pytest.raises(Closing, match="2-channel"):
        decode_frame(b"\0" * 6, "s16le", channels=2)


def test_container_decoder_takes_ogg_and_webm_opus_in_pieces_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    speech = tmp_path / "speech.wav"
    speak("the quick brown fox", speech)
    for suffix in ("ogg", "webm"):
        encoded = tmp_path / f"speech.{suffix}"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(speech), "-c:a", "libopus", str(encoded)],
            check=True,
        )
        samples, ends = decode_in_pieces(encoded.read_bytes())
        expected = len(np.concatenate(list(decode_blocks(speech, 0.1))))
        assert ends == [None] and abs(len(samples) - expected) < 0.05 * expected
        assert np.abs(samples).max() > 0.05
    assert decode_in_pieces(b"RIFF" + speech.read_bytes()[4:])[1] == [
        "expected Opus in Ogg or WebM"
    ]
    assert decode_in_pieces(b"garbage" * 1000)[1] == ["expected Opus in Ogg or WebM"]
    # WAV: Deepgram without `encoding`
    samples, ends = decode_in_pieces(speech.read_bytes(), opus_only=False)
    assert ends == [None] and len(samples) > 16_000


def test_the_publishers_opus_encoder_round_trips_speech_at_any_rate(tmp_path: Path) -> None:
    speech = np.concatenate(
        list(decode_blocks(speak("the quick brown fox", tmp_path / "speech.wav"), 0.1))
    )
    for rate in (16_000, 44_100, 48_000):
        audio = np.interp(
            np.arange(int(len(speech) * rate / 16_000)) * 16_000 / rate,
            np.arange(len(speech)),
            speech,
        )
        encoder = OggOpusEncoder(rate)
        pieces = [
            encoder.encode(audio[i : i + rate // 10]) for i in range(0, len(audio), rate // 10)
        ]
        data = b"".join(pieces) + encoder.close()
        # pages as it goes
        assert data.startswith(b"OggS") and sum(1 for p in pieces if p) > len(pieces) // 2
        assert len(data) < len(speech) * 2 / 4  # a small part of 16 kHz PCM's bytes
        decoded, ends = decode_in_pieces(data)
        assert ends == [None] and abs(len(decoded) - len(speech)) < 0.02 * len(speech) + 960
        assert np.corrcoef(decoded[: len(speech)], speech[: len(decoded)])[0, 1] > 0.5


def decode_in_pieces(data: bytes, opus_only: bool = True) -> tuple[np.ndarray, list[str | None]]:
    pieces: list[np.ndarray] = []
    ended = threading.Event()
    ends: list[str | None] = []
    decoder = ContainerDecoder(
        pieces.append,
        lambda error: (ends.append(error), ended.set()),
        max_pending=1 << 22,
        opus_only=opus_only,
    )
    for offset in range(0, len(data), 999):
        decoder.feed(data[offset : offset + 999])
    decoder.close()
    assert ended.wait(30)
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32), ends


def test_finalize_and_clear_reach_the_vad_in_order_with_the_audio() -> None:
    source = PushSource(8000)
    sink = CaptureQueue(max_blocks=100)
    source.start(sink)
    source.push(np.ones(1000, np.float32))
    source.control("finalize")
    source.push(np.ones(100, np.float32))
    source.control("clear")
    source.end()
    items = []
    while not isinstance(item := sink.get(0.1), EndOfAudio):
        items.append(len(item.samples) if hasattr(item, "samples") else item.action)
    assert items == [800, 200, "finalize", 100, "clear"]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with Engine(Config()) as shared:
        yield shared


@pytest.mark.slow
def test_openai_streamed_transcription_sends_a_delta_per_caption(
    engine: Engine, en_clips: list[Clip]
) -> None:
    import openai

    clips = by_length(en_clips, 3)
    with running(engine) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        for clip in clips:
            with clip.path.open("rb") as audio:
                events = list(
                    client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True)
                )
            deltas = [e for e in events if e.type == "transcript.text.delta"]
            assert (
                deltas
                and events[-1].type == "transcript.text.done"
                and len(events) == len(deltas) + 1
            )
            assert "".join(d.delta for d in deltas) == events[-1].text
            assert wer(clip.reference, events[-1].text) < 0.35, events[-1].text
        with (
            clip.path.open("rb") as audio,
            pytest.raises(openai.BadRequestError, match="stream=true takes"),
        ):
            client.audio.transcriptions.create(
                model="whisper-1", file=audio, stream=True, response_format="srt"
            )
        with pytest.raises(openai.BadRequestError, match="not a readable audio"):
            client.audio.transcriptions.create(
                model="whisper-1", file=("a.mp3", b"not audio" * 50), stream=True
            )
        url = base + "/v1/audio/transcriptions"
        refused = httpx.post(url, files={"file": ("a.wav", b"x" * 100)}, data={"stream": "maybe"})
        assert refused.status_code == 400 and "stream must be" in refused.json()["error"]["message"]
        status = httpx.get(base + "/status").json()
    assert status["uploads_active"] == 0 and status["uploads_total"] >= 3


@pytest.mark.slow
def test_a_streamed_upload_left_early_stops_its_transcription(
    engine: Engine, tmp_path: Path
) -> None:
    long = long_recording(tmp_path)  # nine minutes: whole, 25 worker-seconds or more here
    with running(engine) as base:
        # the engine is shared with other tests
        audio_before = httpx.get(base + "/status").json()["audio_seconds"]
        files = {"file": ("long.flac", long.read_bytes())}
        with httpx.stream(
            "POST",
            base + "/v1/audio/transcriptions",
            files=files,
            data={"stream": "true"},
            timeout=120,
        ) as response:
            first = next(response.iter_lines())
        assert json.loads(first.removeprefix("data: "))["type"] == "transcript.text.delta"
        for _ in range(600):
            status = httpx.get(base + "/status", timeout=60).json()
            if not status["uploads_active"]:
                break
            time.sleep(0.1)
    assert status["uploads_active"] == 0
    # stopped: the audio taken through the pipeline is far from the nine minutes of the file
    assert status["audio_seconds"] - audio_before < 270, status


# -- Deepgram live: WS /v1/listen
# -------------------------------------------------------------------


def deepgram_client(base: str, key: str = "unused"):  # noqa: ANN201 - deepgram.DeepgramClient
    from deepgram import DeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

    ws = base.replace("http://", "ws://")
    return DeepgramClient(api_key=key, environment=DeepgramClientEnvironment(
        base=base, production=ws, agent=ws, agent_rest=base))


def deepgram_session(
    base: str,
    frames: list[bytes],
    *,
    finalize_at: int | None = None,
    key: str = "unused",
    **query: str,
) -> list:
    """Stream `frames` at 1x through the real deepgram-sdk (`Finalize` after frame `finalize_at`),
    then `CloseStream`; every message the SDK parsed, in order, and the close if it was an error."""
    messages: list = []
    with deepgram_client(base, key).listen.v1.connect(model="nova-3", **query) as socket:

        def read() -> None:
            try:
                messages.extend(socket)
            except websockets.ConnectionClosed as closed:
                messages.append(closed)

        reader = threading.Thread(target=read)
        reader.start()
        t0 = time.monotonic()
        try:
            for index, frame in enumerate(frames):
                time.sleep(max(0.0, t0 + index * 0.1 - time.monotonic()))  # the pace of live audio
                socket.send_media(frame)
                if index == finalize_at:
                    socket.send_finalize()
            socket.send_close_stream()
        except websockets.ConnectionClosed:  # the server closed first: the reader has its reason
            pass
        reader.join(timeout=120)
    return messages


@pytest.mark.slow
def test_deepgram_sdk_gets_interim_and_final_results(engine: Engine, en_clips: list[Clip]) -> None:
    from deepgram.listen.v1.types import (
        ListenV1Metadata,
        ListenV1Results,
        ListenV1SpeechStarted,
        ListenV1UtteranceEnd,
    )

    clip = by_length(en_clips, 1)[0]
    with running(engine) as base:
        messages = deepgram_session(
            base,
            pcm_frames(clip.path),
            encoding="linear16",
            sample_rate="16000",
            interim_results="true",
            vad_events="true",
            utterance_end_ms="1000",
            smart_format="true",
        )
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    interims = [r for r in results if not r.is_final]
    finals = [r for r in results if r.is_final]
    assert interims and finals and any(r.speech_final for r in finals)
    assert isinstance(messages[0], ListenV1SpeechStarted) and isinstance(
        messages[-1], ListenV1Metadata
    )
    assert any(isinstance(m, ListenV1UtteranceEnd) for m in messages)
    assert messages[-1].duration > clip.duration - 0.5 and messages[-1].channels == 1
    text = " ".join(r.channel.alternatives[0].transcript for r in finals)
    assert wer(clip.reference, text) < 0.35, text
    for final in finals:
        alternative = final.channel.alternatives[0]
        assert alternative.words and 0 < alternative.confidence <= 1 and final.duration > 0
        assert all(w.start <= w.end and w.punctuated_word for w in alternative.words)
        assert final.start <= alternative.words[0].start
        assert alternative.words[-1].end <= final.start + final.duration + 0.01
    assert all(r.channel.alternatives[0].transcript for r in interims)


@pytest.mark.slow
def test_deepgram_finalize_mulaw_opus_and_plain_transcripts(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    from deepgram.listen.v1.types import ListenV1Results

    clip = by_length(en_clips, 1)[0]
    to_mulaw = [
        "ffmpeg", "-v", "error", "-i", str(clip.path), "-ar", "8000", "-ac", "1", "-f", "mulaw",
        "-",
    ]
    # and 1 s of silence
    mulaw = subprocess.run(to_mulaw, check=True, capture_output=True).stdout + b"\xff" * 8000
    ogg = tmp_path / "clip.ogg"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(clip.path), "-c:a", "libopus", "-b:a", "24k", str(ogg)],
        check=True,
    )
    opus = ogg.read_bytes()
    with running(engine) as base:
        finalized = deepgram_session(
            base,
            [mulaw[i : i + 800] for i in range(0, len(mulaw), 800)],
            finalize_at=len(mulaw) // 1600,
            encoding="mulaw",
            sample_rate="8000",
        )
        contained = deepgram_session(
            base, [opus[i : i + 2000] for i in range(0, len(opus), 2000)], punctuate="true"
        )
    finals = [m for m in finalized if isinstance(m, ListenV1Results) and m.is_final]
    assert any(r.from_finalize for r in finals)
    # interim_results off
    assert all(r.is_final for r in finalized if isinstance(r, ListenV1Results))
    text = " ".join(r.channel.alternatives[0].transcript for r in finals)
    # punctuate and smart_format off: plain words
    assert text == text.lower() and not set(",.?!") & set(text), text
    assert wer(clip.reference, text) < 0.35, text
    text = " ".join(
        m.channel.alternatives[0].transcript for m in contained if isinstance(m, ListenV1Results)
    )
    assert wer(clip.reference, text) < 0.35, text


def listen_url(base: str, query: str) -> str:
    return base.replace("http://", "ws://") + "/v1/listen?" + query


@pytest.mark.slow
def test_deepgram_bad_input_closes_with_a_reason_and_keys_are_checked(
    engine: Engine, en_clips: list[Clip]
) -> None:
    clip = by_length(en_clips, 1)[0]
    pcm = "encoding=linear16&sample_rate=16000"
    with running(engine, max_frame_kb=62.5, api_key="s3cret") as base:
        key = "&api_key=s3cret"
        cases = {
            "encoding=flac&sample_rate=16000": (1003, "encoding must be"),
            "encoding=linear16": (1003, "needs sample_rate"),
            "encoding=linear16&sample_rate=abc": (1007, "sample_rate must be"),
            pcm + "&interim_results=maybe": (1007, "interim_results must be"),
            pcm + "&language=klingon": (1007, "unknown language"),
            pcm + "&channels=99": (1007, "channels must be"),
        }
        for query, (code, words) in cases.items():
            closed, reason, events = asyncio.run(exchange(listen_url(base, query + key), []))
            assert closed == code and words in reason, (query, closed, reason)
            assert events == [
                {"type": "Error", "variant": "livecap", "description": reason, "message": reason}
            ] or events[0]["description"].startswith(reason)
        for messages, code, words in (
            ([b"\0" * 64_002], 1009, "limit is 64000"),
            ([b"\0\0" * 100, "not json"], 1007, "must be JSON"),
            ([b"\0" * 3], 1007, "not whole"),
        ):
            closed, reason, events = asyncio.run(exchange(listen_url(base, pcm + key), messages))
            assert closed == code and words in reason, (closed, reason)
        messages = ['{"type": "Configure"}', '{"type": "CloseStream"}']
        closed, reason, events = asyncio.run(exchange(listen_url(base, pcm + key), messages))
        assert closed == 1000 and events[0]["type"] == "Error" and events[-1]["type"] == "Metadata"
        closed, reason, _ = asyncio.run(
            exchange(listen_url(base, "encoding=opus" + key), [b"not an ogg stream" * 200])
        )
        assert closed == 1007 and "expected Opus in Ogg or WebM" in reason
        closed, reason, _ = asyncio.run(exchange(listen_url(base, pcm), []))  # no key
        assert closed == 1008 and "API key" in reason
        frames = pcm_frames(clip.path)
        refused = deepgram_session(
            base, frames[:5], key="wrong", encoding="linear16", sample_rate="16000"
        )
        assert refused[-1].rcvd.code == 1008 and "API key" in refused[-1].rcvd.reason
        messages = deepgram_session(
            base, frames, key="s3cret", encoding="linear16", sample_rate="16000"
        )
        assert messages and messages[-1].type == "Metadata"

        async def browser_form() -> tuple[str | None, list[dict]]:
            # new WebSocket(url, ["token", KEY])
            async with websockets.connect(
                listen_url(base, pcm), subprotocols=["token", "s3cret"]
            ) as ws:
                await ws.send('{"type": "CloseStream"}')
                return ws.subprotocol, await collect(ws)

        subprotocol, events = asyncio.run(browser_form())
        assert subprotocol == "token" and events[-1]["type"] == "Metadata"


# -- Opus on /v1/stream
# ------------------------------------------------------------------------------


@pytest.mark.slow
def test_stream_takes_ogg_and_webm_opus_as_recorded(
    engine: Engine, en_clips: list[Clip], tmp_path: Path
) -> None:
    clips = by_length(en_clips, 2)
    with running(engine) as base:
        url = base.replace("http://", "ws://") + "/v1/stream"
        for clip, suffix in zip(clips, ("ogg", "webm")):
            encoded = tmp_path / f"clip.{suffix}"
            subprocess.run(
                [
                    "ffmpeg", "-v", "error", "-i", str(clip.path), "-af", "apad=pad_dur=1", "-c:a",
                    "libopus", "-b:a", "24k", str(encoded),
                ],
                check=True,
            )
            data = encoded.read_bytes()
            pieces = [data[i : i + 1500] for i in range(0, len(data), 1500)]
            result = asyncio.run(
                stream_frames(url, pieces, speed=0, start={"sample_format": "opus"})
            )
            assert result.close_code == 1000 and result.events[0]["sample_format"] == "opus", (
                result.close_reason
            )
            assert wer(clip.reference, result.text) < 0.35, result.text
            assert result.stats["audio_seconds"] > clip.duration
        closed, reason, events = asyncio.run(
            exchange(
                url,
                [
                    json.dumps({"type": "start", "sample_format": "opus"}),
                    (tmp_path / "clip.ogg").read_bytes()[:3000],
                    b"\0garbage" * 500,
                    json.dumps({"type": "end"}),
                ],
            )
        )
        # damage inside a stream: Ogg resyncs, or it is refused with the reason
        assert closed in (1000, 1007), reason
        closed, reason, events = asyncio.run(
            exchange(url, [json.dumps({"type": "start", "sample_format": "opus"}), b"\0" * 32_000])
        )
        assert (
            closed == 1007
            and "expected Opus in Ogg or WebM" in reason
            and events[-1]["type"] == "error"
        )


# -- OpenAI Realtime, transcription mode: WS /v1/realtime?intent=transcription
# ------------------------


def realtime_turns(connection, audio: bytes, chunk: int, rate_bytes: int) -> list:  # noqa: ANN001 - openai's
    """Append `audio` at 1x through the real openai Realtime connection (GA or beta), then commit,
    and read events until the commit is answered (`committed`, or the error that nothing was left
    to commit) and every committed turn is completed; every event, in order."""
    events: list = []
    done = threading.Event()

    def read() -> None:
        counts = {"started": 0, "stopped": 0, "committed": 0, "completed": 0, "answered": 0}
        names = {
            "input_audio_buffer.speech_started": "started",
            "input_audio_buffer.speech_stopped": "stopped",
            "input_audio_buffer.committed": "committed",
            "conversation.item.input_audio_transcription.completed": "completed",
        }
        try:
            for event in connection:
                events.append(event)
                if event.type in names:
                    counts[names[event.type]] += 1
                answer = event.type == "error" or event.type == "input_audio_buffer.committed"
                counts["answered"] += done.is_set() and answer
                if counts["answered"] and counts["started"] == counts["stopped"] and \
                        counts["completed"] >= counts["committed"] > 0:
                    return
        except websockets.ConnectionClosed:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    t0 = time.monotonic()
    for index, offset in enumerate(range(0, len(audio), chunk)):
        # the pace of live audio
        time.sleep(max(0.0, t0 + index * chunk / rate_bytes - time.monotonic()))
        connection.input_audio_buffer.append(
            audio=base64.b64encode(audio[offset : offset + chunk]).decode()
        )
    done.set()
    connection.input_audio_buffer.commit()
    reader.join(timeout=120)
    return events


def check_turns(events: list, reference: str) -> None:
    kinds = [e.type for e in events]
    completed = [
        e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
    ]
    assert (
        "input_audio_buffer.speech_started" in kinds
        and "input_audio_buffer.speech_stopped" in kinds
    ), kinds
    assert "input_audio_buffer.committed" in kinds and completed, kinds
    # the only error: the last commit found the server's VAD had committed everything already
    assert all(
        e.error.code == "input_audio_buffer_commit_empty" for e in events if e.type == "error"
    )
    text = " ".join(e.transcript for e in completed)
    assert wer(reference, text) < 0.35, text
    deltas = [e for e in events if e.type == "conversation.item.input_audio_transcription.delta"]
    assert deltas
    for item in completed:
        # the deltas (committed words, never retracted) are the transcript's start, but for
        # its last re-decoded words
        joined = "".join(d.delta for d in deltas if d.item_id == item.item_id).split()
        start = " ".join(item.transcript.split()[: len(joined)])
        assert not joined or wer(start, " ".join(joined)) < 0.35, (joined, item.transcript)
    committed = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
    assert {e.item_id for e in completed} <= set(committed)


@pytest.mark.slow
def test_openai_realtime_transcription_ga_and_beta(engine: Engine, en_clips: list[Clip]) -> None:
    import openai

    clip = by_length(en_clips, 1)[0]
    convert = ["ffmpeg", "-v", "error", "-i", str(clip.path), "-ac", "1"]
    pcm24 = subprocess.run(
        [*convert, "-af", "apad=pad_dur=1.5", "-ar", "24000", "-f", "s16le", "-"],
        # the server's VAD ends the last turn
        check=True,
        capture_output=True,
    ).stdout
    ulaw = subprocess.run([*convert, "-ar", "8000", "-f", "mulaw", "-"],
                          # no silence after: the commit ends it
                          check=True, capture_output=True).stdout
    with running(engine) as base:
        client = openai.OpenAI(
            base_url=base + "/v1",
            websocket_base_url=base.replace("http", "ws") + "/v1",
            api_key="unused",
            max_retries=0,
        )
        with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
            assert connection.recv().type == "session.created"
            connection.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}})
            updated = connection.recv()
            assert (
                updated.type == "session.updated"
                and updated.session.audio.input.format.rate == 24000
            )
            check_turns(realtime_turns(connection, pcm24, 4800, 48_000), clip.reference)
        with client.beta.realtime.connect(
            model="gpt-4o-transcribe", extra_query={"intent": "transcription"}
        ) as beta:
            assert beta.recv().type == "transcription_session.created"
            beta.transcription_session.update(
                session={
                    "input_audio_format": "g711_ulaw",
                    "input_audio_transcription": {"model": "whisper-1"},
                    "turn_detection": None,
                }
            )
            assert beta.recv().type == "transcription_session.updated"
            check_turns(realtime_turns(beta, ulaw, 800, 8000), clip.reference)


@pytest.mark.slow
def test_openai_realtime_bad_events_get_errors_and_bad_streams_a_close(engine: Engine) -> None:
    with running(engine, max_frame_kb=16, api_key="s3cret") as base:
        url = base.replace("http://", "ws://") + "/v1/realtime?intent=transcription&api_key=s3cret"

        async def talk(messages: list[str]) -> tuple[int | None, list[dict]]:
            async with websockets.connect(url) as ws:
                for message in messages:
                    await ws.send(message)
                events = [json.loads(await ws.recv()) for _ in range(len(messages) + 1)]
                return ws.close_code, events

        code, events = asyncio.run(
            talk(
                [
                    "not json",
                    '{"type": "response.create"}',
                    '{"type": "session.update", "session": {"type": "realtime"}}',
                    json.dumps(
                        {
                            "type": "session.update",
                            "session": {"audio": {"input": {"format": {"type": "audio/mp3"}}}},
                        }
                    ),
                    '{"type": "input_audio_buffer.append", "audio": "***"}',
                    '{"type": "input_audio_buffer.commit"}',
                ]
            )
        )
        # still open after every error
        assert events[0]["type"] == "session.created" and code is None
        errors = [e["error"] for e in events[1:]]
        assert [e["code"] for e in errors] == [
            "invalid_json",
            "unknown_event",
            "invalid_value",
            "invalid_value",
            "invalid_value",
            "input_audio_buffer_commit_empty",
        ], errors
        assert all(e["type"] == "invalid_request_error" and e["message"] for e in errors)
        silence = base64.b64encode(b"\0" * 40_000).decode()
        oversized = json.dumps({"type": "input_audio_buffer.append", "audio": silence})
        closed, reason, _ = asyncio.run(exchange(url, [oversized]))
        assert closed == 1009 and "limit" in reason
        odd = json.dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 3).decode()}
        )
        closed, reason, events = asyncio.run(exchange(url, [odd]))
        assert closed == 1007 and "not whole" in reason and events[-1]["type"] == "error"
        closed, reason, _ = asyncio.run(
            exchange(url.replace("intent=transcription", "model=gpt-realtime"), [])
        )
        assert closed == 1003 and "intent=transcription" in reason
        closed, reason, _ = asyncio.run(exchange(url.replace("&api_key=s3cret", ""), []))
        assert closed == 1008 and "API key" in reason

        async def browser_form() -> tuple[str | None, str]:
            # new WebSocket(url, ["realtime", "openai-...KEY"])
            plain = url.replace("&api_key=s3cret", "")
            async with websockets.connect(
                plain, subprotocols=["realtime", "openai-insecure-api-key.s3cret"]
            ) as ws:
                return ws.subprotocol, json.loads(await ws.recv())["type"]

        assert asyncio.run(browser_form()) == ("realtime", "session.created")


@pytest.mark.slow
def test_mic_publish_audio_must_be_opus_or_pcm() -> None:
    result = run_cli("mic", "--publish", "http://127.0.0.1:9", "--publish-audio", "flac")
    # a usage error
    assert result.returncode == 2 and "--publish-audio must be opus or pcm" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
        result.stderr
    )


@pytest.mark.slow
def test_deepgram_and_realtime_at_capacity_are_refused_at_once(engine: Engine) -> None:
    from websockets.sync.client import connect

    with running(engine, max_streams=1) as base:
        ws = base.replace("http://", "ws://")
        holder = connect(ws + "/v1/stream")  # takes the one place
        holder.send(json.dumps({"type": "start"}))
        assert json.loads(holder.recv())["type"] == "ready"
        closed, reason, events = asyncio.run(
            exchange(ws + "/v1/listen?encoding=linear16&sample_rate=16000", [])
        )
        assert closed == 1013 and "capacity" in reason and events[0]["type"] == "Error"
        closed, reason, events = asyncio.run(exchange(ws + "/v1/realtime?intent=transcription", []))
        assert closed == 1013 and "capacity" in reason and events[0]["type"] == "error"
        holder.close()
        assert streams_active_settles(base) == 0


@pytest.mark.slow
def test_openai_realtime_clear_drops_the_open_turn(engine: Engine, en_clips: list[Clip]) -> None:
    clip = by_length(en_clips, 1)[0]
    # its first 2 s: speech
    speech = b"".join(pcm_frames(clip.path, silence_s=0.0))[: 2 * 16_000 * 2]
    session = {
        "type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
    }

    async def talk(url: str) -> list[dict]:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": session}))
            for offset in range(0, len(speech), 3200):
                chunk = base64.b64encode(speech[offset : offset + 3200]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await ws.send('{"type": "input_audio_buffer.clear"}')
            # a second of silence, then commit
            silence = base64.b64encode(b"\0" * 16_000 * 2).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": silence}))
            await ws.send('{"type": "input_audio_buffer.commit"}')
            events = []
            while not events or events[-1]["type"] != "error":
                # the commit's answer: nothing left to commit
                events.append(json.loads(await ws.recv()))
            return events

    with running(engine) as base:
        events = asyncio.run(
            talk(base.replace("http://", "ws://") + "/v1/realtime?intent=transcription")
        )
    kinds = [e["type"] for e in events]
    assert (
        kinds[:2] == ["session.created", "session.updated"]
        and "input_audio_buffer.speech_started" in kinds
    )
    assert kinds.index("input_audio_buffer.cleared") > kinds.index(
        "input_audio_buffer.speech_started"
    )
    assert "input_audio_buffer.committed" not in kinds  # the turn was dropped unheard
    assert "conversation.item.input_audio_transcription.completed" not in kinds
    assert events[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
