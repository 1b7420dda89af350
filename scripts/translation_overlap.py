"""Measure what the translation stage costs and what overlapping it with ASR gains.

Three pipelines on one loaded model (workers + 1 CTranslate2 workers in all three):
  asr        no translation
  overlapped Whisper translation on its own thread, after reordering (what livecap does)
  inline     the same translation run on the ASR worker right after each final's ASR

For each, a 1x replay of the first SECONDS of a clip (final-caption latency: p50, p95, mean) and a
fast (offline) run of the whole clip (wall time).

    .venv/bin/python scripts/translation_overlap.py [CLIP] [--seconds 30] [--model base]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from livecap.asr.base import AsrBackend, AsrRequest, AsrResult
from livecap.bench.mix import write_wav
from livecap.config import resolve
from livecap.engine import Engine
from livecap.messages import SAMPLE_RATE
from livecap.pipeline.runner import run_stream
from livecap.pipeline.stream import Stream
from livecap.sources.file import FileSource
from livecap.translators.base import TranslationRequest, Translator

DEFAULT_CLIP = (
    Path(__file__).resolve().parent.parent.parent
    / "shared/audio/long/aeneas_es_alarcon_capitan_veneno_dedication.mp3"
)


class InlineTranslation:
    """An ASR backend that also translates each final's segments before it returns."""

    def __init__(self, backend: AsrBackend, translator: Translator) -> None:
        self.backend, self.translator = backend, translator
        self.name, self.device, self.compute_type, self.multilingual = (
            backend.name,
            backend.device,
            backend.compute_type,
            backend.multilingual,
        )

    def transcribe(self, request: AsrRequest) -> AsrResult:
        result = self.backend.transcribe(request)
        samples = request.samples
        if request.final:
            for s in result.segments:
                piece = samples[int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)]
                self.translator.translate(TranslationRequest(s.text, result.language, "en", piece))
        return result


def head(clip: Path, seconds: float, folder: Path) -> Path:
    """The first `seconds` of `clip` as a 16 kHz wav."""
    from faster_whisper.audio import decode_audio

    audio = decode_audio(str(clip))[: int(seconds * SAMPLE_RATE)]
    return write_wav(folder / f"{clip.stem}_{seconds:g}s.wav", audio)


def run(engine: Engine, mode: str, path: Path, realtime: bool) -> tuple[list[float], float, int]:
    """(final-caption latencies, wall seconds, captions) of one run."""
    original = engine.pool.backend
    if mode == "inline":
        engine.pool.backend = InlineTranslation(original, engine.translator)
    try:
        stream = Stream(
            FileSource(path, realtime=realtime),
            engine.pool,
            engine.config,
            stream_id=mode,
            live=realtime,
            translator=engine.translator if mode == "overlapped" else None,
            translation_pool=engine.translation_pool,
        )
        started = time.monotonic()
        result = run_stream(stream)
        wall = time.monotonic() - started
    finally:
        engine.pool.backend = original
    return [lat["latency"] for lat in result.latencies], wall, len(result.captions)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clip", type=Path, nargs="?", default=DEFAULT_CLIP)
    parser.add_argument("--seconds", type=float, default=30.0, help="replayed part of the clip")
    parser.add_argument("--model", default="base")
    args = parser.parse_args()
    config = resolve(
        None, {"model": args.model, "translate_to": "en", "translator": "whisper"}
    ).config
    with Engine(config) as engine, tempfile.TemporaryDirectory() as tmp:
        replay = head(args.clip, args.seconds, Path(tmp))
        print(
            f"{args.clip.name}: replay of {args.seconds:g} s at 1x, then the whole clip offline; "
            f"model {args.model}"
        )
        print(
            f"{'mode':<11} {'captions':>8} {'p50 s':>7} {'p95 s':>7} {'mean s':>7} "
            f"{'offline wall s':>15}"
        )
        for mode in ("asr", "overlapped", "inline"):
            latencies, _, count = run(engine, mode, replay, realtime=True)
            _, wall, _ = run(engine, mode, args.clip, realtime=False)
            p50, p95 = np.percentile(latencies, [50, 95]) if latencies else (float("nan"),) * 2
            mean = statistics.fmean(latencies) if latencies else float("nan")
            print(f"{mode:<11} {count:>8} {p50:>7.2f} {p95:>7.2f} {mean:>7.2f} {wall:>15.1f}")


if __name__ == "__main__":
    main()
