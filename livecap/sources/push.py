"""Audio pushed in by someone else (a network connection) as a live source.

The caller owns the pace: `push()` never blocks, it cuts what it gets into blocks of `block_s` so
the capture queue (sized in blocks) holds the seconds it was configured for, whatever frame size the
client chose, and offers them (a full queue drops and counts, as with a microphone). Audio arrives
at the client's rate and is resampled to 16 kHz by `converter()` on the VAD thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from livecap.sources.queue import CaptureQueue, Control, RawBlock
from livecap.sources.resample import converter_from

BLOCK_S = 0.1


class PushSource:
    """A live source fed by `push(samples)` (float32 mono at `rate`) and closed by `end()`."""

    duration = None
    block_s = BLOCK_S

    def __init__(self, rate: int, name: str = "push") -> None:
        self.name = name
        self.rate = rate
        self._block = max(1, int(rate * BLOCK_S))
        self._pending = np.zeros(0, dtype=np.float32)
        self._sink: CaptureQueue | None = None
        self._lock = threading.Lock()
        self._ended = False

    def converter(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Resampling to 16 kHz for the VAD thread; None when the audio already is 16 kHz."""
        return converter_from(self.rate)

    def start(self, sink: CaptureQueue) -> None:
        self._sink = sink

    def push(self, samples: np.ndarray) -> None:
        """Offer audio in whole blocks; never blocks. Ignored after the end (or before start)."""
        with self._lock:
            if self._ended or self._sink is None:
                return
            pending = np.concatenate((self._pending, samples.astype(np.float32, copy=False)))
            whole = len(pending) - len(pending) % self._block
            now = time.monotonic()
            for offset in range(0, whole, self._block):
                self._sink.offer(RawBlock(pending[offset : offset + self._block], now))
            self._pending = pending[whole:]

    def end(self, error: str | None = None) -> None:
        """Once: hand on the last partial block, then the end
        of audio (`error` says why it ended early)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            if self._sink is None:
                return
            self._hand_on_partial()
        self._sink.end(error)

    def control(self, action: str) -> None:
        """After the audio pushed so far (its partial block too): "finalize" or "clear" the open
        utterance (see `Control`). Ignored after the end."""
        with self._lock:
            if self._ended or self._sink is None:
                return
            self._hand_on_partial()
            self._sink.control(Control(action))

    def _hand_on_partial(self) -> None:
        assert self._sink is not None
        if len(self._pending):
            self._sink.offer(RawBlock(self._pending, time.monotonic()))
            self._pending = np.zeros(0, dtype=np.float32)

    def stop(self) -> None:
        self.end()
