"""Resampling live audio to the 16 kHz the pipeline takes,
for sources that capture at another rate."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from livecap.messages import SAMPLE_RATE


def converter_from(rate: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """Stateful resampling from `rate` to 16 kHz (for the VAD thread: one call per block, in order);
    None when the audio already is 16 kHz."""
    if rate == SAMPLE_RATE:
        return None
    import soxr

    return soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32").resample_chunk
