"""Speech sessions for live tests and measurements: clips joined with pauses, written as WAV (stdlib)."""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conftest import Clip

from livecap.sources.file import decode_blocks
from livecap.messages import SAMPLE_RATE

SESSION_CLIPS = ("61-70968-0000", "6930-75918-0000", "mr_quilter")  # 4.9 + 3.5 + 5.9 s of read English


def session_clips(clips: Sequence[Clip]) -> list[Clip]:
    """The clips of the joined test session, or the first three where they are absent."""
    return [c for name in SESSION_CLIPS for c in clips if name in c.path.name] or list(clips[:3])


def write_wav(path: Path, samples: np.ndarray) -> Path:
    """16 kHz mono 16-bit WAV."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def join_clips(paths: Sequence[Path], out: Path, pause_s: float = 1.5) -> Path:
    """The clips one after the other, with `pause_s` of silence before, between and after them."""
    pause = np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
    parts = [pause]
    for path in paths:
        parts += [*decode_blocks(path), pause]
    return write_wav(out, np.concatenate(parts))
