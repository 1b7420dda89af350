"""Several streams on one engine: unique ids, their own transcripts, no cross-talk, a stop on one
touches only that one; translated captions do not keep their audio."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from conftest import Clip
from livecap.bench.wer import wer
from livecap.config import Config
from livecap.engine import Engine
from livecap.pipeline.runner import RunResult, run_stream
from livecap.sources.file import FileSource

pytestmark = pytest.mark.slow


def run_concurrently(
    engine: Engine, paths: list[Path], *, realtime: bool
) -> tuple[list[str], list[RunResult]]:
    streams = [engine.stream(FileSource(p, realtime=realtime), live=realtime) for p in paths]
    results: list[RunResult | None] = [None] * len(streams)

    def run(index: int) -> None:
        results[index] = run_stream(streams[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(r is not None for r in results)
    return [s.stream_id for s in streams], results  # type: ignore[return-value]


def test_concurrent_live_streams_get_their_own_transcripts(en_clips: list[Clip]) -> None:
    chosen = sorted(en_clips, key=lambda c: -c.duration)[:3]
    with Engine(Config()) as engine:
        ids, results = run_concurrently(engine, [c.path for c in chosen], realtime=True)
    assert len(set(ids)) == len(ids)
    for clip, stream_id, result in zip(chosen, ids, results):
        assert result.end_reason is None and not result.errors
        assert all(c.stream_id == stream_id for c in result.captions)
        assert [c.seq for c in result.captions] == list(range(len(result.captions)))
        text = " ".join(c.text for c in result.captions)
        assert wer(clip.reference, text) < 0.35, (clip.path.name, text)


def test_stopping_one_file_stream_keeps_the_others_finals(
    en_clips: list[Clip], tmp_path: Path
) -> None:
    chosen = sorted(en_clips, key=lambda c: -c.duration)[:2]
    with Engine(Config()) as engine:
        keep = engine.stream(FileSource(chosen[0].path), live=False)
        stopped = engine.stream(FileSource(chosen[1].path), live=False)
        result: dict[str, RunResult] = {}
        thread = threading.Thread(target=lambda: result.setdefault("keep", run_stream(keep)))
        thread.start()
        stopped.start()
        stopped.stop("interrupted")  # withdraws only its own queued finals
        thread.join(timeout=120)
    kept = result["keep"]
    assert kept.end_reason is None and not kept.errors
    assert wer(chosen[0].reference, " ".join(c.text for c in kept.captions)) < 0.35
