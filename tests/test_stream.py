"""A Stream's queues, ordering and faults, at unit speed: real speech through the real VAD,
segmenter and reordering, with the fake ASR and translation of `fakes` (their timings only)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import Clip
from fakes import FakeBackend, FakeTranslator, FastSource, drive
from live_audio import join_clips, joined_clips
from livecap.asr.pool import AsrPool
from livecap.config import Config
from livecap.messages import Caption, StreamEnd, StreamError
from livecap.pipeline.stream import Stream
from livecap.sources.file import FileSource, decode_blocks
from livecap.sources.queue import CaptureQueue, EndOfAudio, RawBlock

FAILING = "u2 first"  # the caption whose translation fails


@pytest.fixture(scope="module")
def turns(en_clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few English clips joined with pauses, like someone speaking in turns."""
    return join_clips(
        [c.path for c in joined_clips(en_clips)], tmp_path_factory.mktemp("turns") / "turns.wav"
    )


def test_translation_keeps_order_and_survives_a_failure(turns: Path) -> None:
    """Two streams share the ASR pool and the engine's one translation pool, with uneven fake ASR
    and translation timings. Each stream's captions leave in order, each translated once, a
    failing translation does not stop them, and no caption keeps its audio once translated (a long
    result must not hold all its audio)."""
    base = Config()
    config = replace(
        base,
        live=replace(base.live, interim=False),
        translate=replace(base.translate, translate_to="en"),
    )
    translator = FakeTranslator(FAILING)
    pool = AsrPool(
        FakeBackend((0.0, 0.005, 0.01), lambda n: (f"u{n + 1} first", f"u{n + 1} second"), "de"),
        workers=3,
    )
    translation_pool = ThreadPoolExecutor(3)
    streams = [
        Stream(FileSource(turns), pool, config, stream_id=f"s{i}", live=True, translator=translator,
               translation_pool=translation_pool)
        for i in (1, 2)
    ]
    try:
        events = drive(streams)
    finally:
        pool.shutdown()
        translation_pool.shutdown()
    everything = []
    for stream_id, received in events.items():
        assert isinstance(received[-1], StreamEnd) and received[-1].reason is None
        assert not [e for e in received if isinstance(e, StreamError)]
        captions = [e for e in received if isinstance(e, Caption)]
        assert len(captions) >= 6  # two per utterance, at least one utterance per clip
        assert {c.stream_id for c in captions} == {stream_id}
        assert [c.seq for c in captions] == list(range(len(captions)))
        assert [c.start for c in captions] == sorted(c.start for c in captions)
        everything += captions
    assert sorted(c.text for c in everything) == sorted(translator.seen)  # each translated once
    assert any(c.text == FAILING for c in everything)
    for caption in everything:
        if caption.text == FAILING:
            assert caption.translation == caption.text and caption.translation_failed
        else:
            assert caption.translation == f"en: {caption.text}" and not caption.translation_failed
        assert caption.timings["translate_start"] >= caption.timings["asr_end"]
        assert caption.audio is None


def test_overload_keeps_queues_bounded_and_finals_whole_and_ordered(turns: Path) -> None:
    """Speech forty times faster than real time into one worker slower than that (and stalled until
    the capture queue overflows, so that the overload never depends on how the threads are
    scheduled): the capture queue drops (and counts) what it cannot hold, pending finals stay within
    their limit, interims are shed, and every final that went to ASR comes out once, in order."""
    audio = np.concatenate(list(decode_blocks(turns)))
    base = Config()
    config = replace(
        base,
        live=replace(base.live, capture_queue_s=1.0, max_pending_finals=2, interim_interval_ms=100),
    )
    overflowed = threading.Event()
    # uneven: later jobs often finish first
    backend = FakeBackend(delays=(0.04, 0.3), hold=overflowed)
    # one slow worker: finals alone outrun it, whatever the interim cadence
    pool = AsrPool(backend, workers=1)
    stream = Stream(
        FastSource(np.concatenate([audio, audio]), speed=40),
        pool,
        config,
        stream_id="s1",
        live=True,
    )
    depths, pending, behind = [], [], []

    def sample(polled: Stream) -> None:
        snapshot = polled.stats_snapshot()
        depths.append(polled.capture.depth())
        pending.append(snapshot.pending_finals)
        behind.append(snapshot.behind_seconds)
        if polled.capture.dropped_samples:
            overflowed.set()

    try:
        captions = [e for e in drive([stream], sample)["s1"] if isinstance(e, Caption)]
    finally:
        pool.shutdown()
    capacity = stream.capture.max_blocks
    assert capacity == 10 and max(depths) <= capacity
    # it was overloaded: audio beyond the queue was dropped, counted
    assert stream.capture.dropped_samples > 0
    assert max(pending) <= config.live.max_pending_finals
    assert sorted(c.text for c in captions) == sorted(backend.finals) and len(captions) >= 4
    assert [c.seq for c in captions] == list(range(len(captions)))
    assert all(a.start < b.start for a, b in zip(captions, captions[1:]))
    assert stream.pool.interims_skipped > 0  # interims are shed under load, finals never
    assert max(behind) >= capacity * 0.1  # the backlog shows: at least the full capture queue


def test_an_end_on_a_full_capture_queue_counts_the_audio_it_pushes_out() -> None:
    """The end (or a client's finalize) always gets through a full queue; the audio it pushes out is
    dropped audio like any other, counted."""
    capture = CaptureQueue(max_blocks=2)
    for _ in range(3):
        capture.offer(RawBlock(np.zeros(1600, dtype=np.float32), 0.0))
    assert (capture.dropped_blocks, capture.dropped_samples) == (1, 1600)
    capture.end()
    assert (capture.dropped_blocks, capture.dropped_samples) == (2, 3200)
    taken = [capture.get(timeout=1) for _ in range(2)]
    assert isinstance(taken[0], RawBlock) and isinstance(taken[1], EndOfAudio)
