"""Joined speech for live tests and measurements: clips joined with pauses, written as WAV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conftest import Clip
from livecap.bench.mix import write_wav
from livecap.messages import SAMPLE_RATE
from livecap.sources.file import decode_blocks

__all__ = ["join_clips", "joined_clips", "write_wav"]

# 4.9 + 3.5 + 5.9 s of read English
JOINED_CLIPS = ("61-70968-0000", "6930-75918-0000", "mr_quilter")


def joined_clips(clips: Sequence[Clip]) -> list[Clip]:
    """The clips of the joined test recording, or the first three where they are absent."""
    return [c for name in JOINED_CLIPS for c in clips if name in c.path.name] or list(clips[:3])


def join_clips(paths: Sequence[Path], out: Path, pause_s: float = 1.5) -> Path:
    """The clips one after the other, with `pause_s` of silence before, between and after them."""
    pause = np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
    parts = [pause]
    for path in paths:
        parts += [*decode_blocks(path), pause]
    return write_wav(out, np.concatenate(parts))
