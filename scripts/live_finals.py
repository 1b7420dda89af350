"""Live finals without the 1x replay: the live segmenter over a mix in 0.1 s blocks, each final
decoded alone as the live pipeline decodes it. Live finals depend on the audio alone (not on timing
or load), so this gives the live WER of `livecap file --realtime` in seconds, on a busy machine too.

    .venv/bin/python scripts/live_finals.py MIX.wav [--model tiny.en]

MIX.wav is a mix built by scripts/live_mix.py (its .json sidecar holds the references). Prints the
WER, the number of finals, the tentative (speculative) finals and how many of them were not used,
and the decode CPU per final.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from livecap.asr.base import AsrRequest
from livecap.asr.whisper import WhisperBackend
from livecap.bench.mix import _read, load_sections
from livecap.bench.wer import wer
from livecap.config import AsrConfig, VadConfig
from livecap.messages import SAMPLE_RATE, AudioChunk
from livecap.pipeline.vad import Segmenter

BLOCK = SAMPLE_RATE // 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mix", type=Path)
    parser.add_argument("--model", default="tiny.en")
    args = parser.parse_args()
    audio = _read(args.mix, [])
    segmenter = Segmenter(VadConfig(), live=True)
    finals, tentatives = [], []
    for i in range(0, len(audio), BLOCK):
        finals += segmenter.push(AudioChunk(audio[i : i + BLOCK], i / SAMPLE_RATE, 0.0), 0.0)
        tentative = segmenter.tentative(0.0)
        if tentative is not None:
            tentatives.append((tentative.seq, tentative.start, tentative.end))
    finals += segmenter.flush(0.0)
    used = {(u.seq, u.start, u.end) for u in finals} & set(tentatives)
    backend = WhisperBackend(AsrConfig(model=args.model, workers=1, cpu_threads=1))
    silence = np.zeros(segmenter.silence_after, np.float32)
    started = time.process_time()
    texts = [
        " ".join(s.text for s in backend.transcribe(
            AsrRequest(np.concatenate([u.samples, silence]), final=True, word_timestamps=True)
        ).segments)
        for u in finals
    ]
    cpu = time.process_time() - started
    reference = " ".join(
        s.reference for s in load_sections(args.mix) if s.kind == "speech" and s.reference
    )
    print(
        f"live WER {wer(reference, ' '.join(texts)):.1%}, {len(finals)} finals, {len(tentatives)} "
        "tentative "
        f"finals ({len(tentatives) - len(used)} not used), decode CPU "
        f"{cpu / max(1, len(finals)):.2f} s per final"
    )


if __name__ == "__main__":
    main()
