"""The live pipeline: `livecap file --realtime` on real speech (1x replay), silence and noise, `--gpu`,
and the pipeline under overload (a slow fake ASR backend: unit level)."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import Clip, run_cli
from live_audio import join_clips, joined_clips, write_wav
from livecap.asr.base import AsrRequest, AsrResult, AsrSegment
from livecap.asr.pool import AsrPool
from livecap.bench.wer import wer
from livecap.config import Config
from livecap.messages import SAMPLE_RATE, Caption, StreamEnd
from livecap.pipeline.stream import Stream
from livecap.sources.file import decode_blocks
from livecap.sources.queue import CaptureQueue, RawBlock

pytestmark = pytest.mark.slow

PAUSE_S = 1.5


@pytest.fixture(scope="session")
def turns(en_clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A few English clips joined with pauses, like someone speaking in turns; and its reference."""
    chosen = joined_clips(en_clips)
    path = join_clips([c.path for c in chosen], tmp_path_factory.mktemp("live") / "turns.wav", PAUSE_S)
    return path, " ".join(c.reference for c in chosen)


def test_realtime_replay_captions_in_order_with_interims_and_journal(turns: tuple[Path, str], tmp_path: Path) -> None:
    path, reference = turns
    # --gpu auto: on a machine without CUDA (CI) this also checks the fallback to the CPU.
    result = run_cli("file", str(path), "--realtime", "--jsonl", "--gpu", "auto", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    finals = [e for e in events if e["type"] == "final"]
    assert wer(reference, " ".join(f["text"] for f in finals)) < 0.35
    assert [f["seq"] for f in finals] == list(range(len(finals)))
    starts = [f["start"] for f in finals]
    assert starts == sorted(starts)
    assert all(f["end"] >= f["start"] for f in finals)
    assert all({"latency", "eos_wait", "processing", "asr"} <= f["latency"].keys() for f in finals)
    # Interims come while each turn is spoken: before its final, with text the final then confirms.
    assert events[0]["type"] == "interim"
    spoken = {e["utterance"] for e in events if e["type"] == "interim" and (e["committed"] or e["tail"])}
    assert len(spoken) >= 2  # interims for more than one turn
    assert all(e["latency"] > 0 for e in events if e["type"] == "interim")
    stats = events[-1]
    assert stats["type"] == "stats" and stats["finals"] == len(finals) and stats["dropped_seconds"] == 0
    journal = [json.loads(line) for line in (tmp_path / "turns.journal.jsonl").read_text().splitlines()]
    assert [(j["seq"], j["text"], j["start"]) for j in journal] == [(f["seq"], f["text"], f["start"]) for f in finals]
    assert (tmp_path / "turns.srt").is_file()


def test_realtime_silence_and_noise_give_no_captions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    silence = write_wav(tmp_path / "silence.wav", np.zeros(3 * SAMPLE_RATE, np.float32))
    noise = write_wav(tmp_path / "noise.wav", rng.normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32))
    result = run_cli("file", str(silence), str(noise), "--realtime", "--plain", "--output-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.strip() == ""
    assert f"error: {silence}: no speech found" in result.stderr
    assert f"error: {noise}: no speech found" in result.stderr
    assert "Traceback" not in result.stderr


def test_file_gpu_without_cuda_is_a_one_line_error(turns: tuple[Path, str]) -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("a CUDA device is present")
    result = run_cli("file", str(turns[0]), "--gpu", timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --gpu: CTranslate2 sees no CUDA device")
    assert len(result.stderr.strip().splitlines()) == 1


# -- overload (unit level: a fake, slow ASR backend) -----------------------------------------------


class SlowBackend:
    """Takes longer than the audio lasts; each final's text is its call number, to track every one."""

    name, device, compute_type, multilingual = "slow", "cpu", "int8", False

    def __init__(self) -> None:
        self.finals: list[str] = []
        self._lock = threading.Lock()
        self._random = random.Random(0)

    def transcribe(self, request: AsrRequest) -> AsrResult:
        samples, final = request.samples, request.final
        with self._lock:
            text = str(len(self.finals)) if final else "interim words"
            if final:
                self.finals.append(text)
            delay = self._random.choice((0.2, 1.5))  # uneven: later jobs often finish first
        time.sleep(delay)
        return AsrResult((AsrSegment(0.0, len(samples) / SAMPLE_RATE, text),), "en", 1.0)


class FastSource:
    """A live source that delivers audio ten times faster than real time, never waiting."""

    name, rate, duration, block_s = "fast", SAMPLE_RATE, None, 0.1

    def __init__(self, samples: np.ndarray) -> None:
        self._blocks = np.array_split(samples, max(1, len(samples) // (SAMPLE_RATE // 10)))
        self._stop = threading.Event()

    def start(self, sink: CaptureQueue) -> None:
        threading.Thread(target=self._run, args=(sink,), daemon=True).start()

    def _run(self, sink: CaptureQueue) -> None:
        for block in self._blocks:
            if self._stop.wait(0.01):
                break
            sink.offer(RawBlock(block, time.monotonic()))
        sink.end()

    def stop(self) -> None:
        self._stop.set()


def test_overload_keeps_queues_bounded_and_finals_whole_and_ordered(turns: tuple[Path, str]) -> None:
    audio = np.concatenate(list(decode_blocks(turns[0])))
    base = Config()
    config = replace(base, live=replace(base.live, capture_queue_s=1.0, max_pending_finals=2, interim_interval_ms=100))
    backend = SlowBackend()
    pool = AsrPool(backend, workers=1)  # one slow worker: finals alone outrun it, whatever the interim cadence
    stream = Stream(FastSource(np.concatenate([audio, audio])), pool, config, stream_id="s1", live=True)
    captions: list[Caption] = []
    depths, pending, behind = [], [], []
    stream.start()
    try:
        while True:
            event = stream.next_event(timeout=0.02)
            snapshot = stream.stats_snapshot()
            depths.append(stream.capture.depth())
            pending.append(snapshot.pending_finals)
            behind.append(snapshot.behind_seconds)
            if isinstance(event, Caption):
                captions.append(event)
            elif isinstance(event, StreamEnd):
                break
    finally:
        pool.shutdown()
    capacity = stream.capture._queue.maxsize
    assert capacity == 10 and max(depths) <= capacity
    assert stream.capture.dropped_samples > 0  # it was overloaded: audio beyond the queue was dropped, counted
    assert max(pending) <= config.live.max_pending_finals
    # Every final that went to ASR came out, once, in stream order.
    assert sorted(c.text for c in captions) == sorted(backend.finals) and len(captions) >= 4
    assert [c.seq for c in captions] == list(range(len(captions)))
    assert all(a.start < b.start for a, b in zip(captions, captions[1:]))
    assert stream.pool.interims_skipped > 0  # interims are shed under load, finals never
    assert max(behind) >= capacity * 0.1  # the backlog shows: at least the full capture queue
