"""The bounded capture queue between an audio source and the VAD stage, and the source protocol."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RawBlock:
    """Audio as the source delivered it (any rate); converted to 16 kHz off the capture thread."""

    samples: np.ndarray
    t_capture: float  # when the block's last sample was captured


@dataclass(frozen=True)
class Control:
    """An instruction for the VAD stage, in order with the audio before it: "finalize" cuts the open
    utterance now (as if the speaker paused), "clear" drops it."""

    action: str


class EndOfAudio:
    """Marks the end of a source's audio; `error` says why it ended early."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error


class CaptureQueue:
    """A bounded queue of audio blocks. Live sources never
    wait on it: a full queue drops and counts."""

    def __init__(self, max_blocks: int) -> None:
        self._queue: queue.Queue[RawBlock | Control | EndOfAudio] = queue.Queue(maxsize=max_blocks)
        self.dropped_samples = 0
        self.dropped_blocks = 0
        # every sample a source delivered, dropped ones included: the stream clock
        self.captured_samples = 0

    def offer(self, block: RawBlock) -> None:
        """Non-blocking put for audio callbacks; overflow is counted as dropped audio."""
        self.captured_samples += len(block.samples)
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            self.dropped_blocks += 1
            self.dropped_samples += len(block.samples)

    def put(self, block: RawBlock, stop: threading.Event) -> bool:
        """Blocking put for sources that may wait (file decoding); False once `stop` is set."""
        while not stop.is_set():
            try:
                self._queue.put(block, timeout=0.1)
                self.captured_samples += len(block.samples)
                return True
            except queue.Full:
                continue
        return False

    def end(self, error: str | None = None) -> None:
        """Signal the end of audio; always delivered, even on a full queue."""
        self.control(EndOfAudio(error))

    def control(self, item: Control | EndOfAudio) -> None:
        """Put a control item after the audio so far; always delivered (a full queue drops its
        oldest audio to make room, counted as dropped: the reader is gone or stalled)."""
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                try:  # make room: the reader is gone or stalled, and the end must get through
                    oldest = self._queue.get_nowait()
                except queue.Empty:
                    continue
                if isinstance(oldest, RawBlock):
                    self.dropped_blocks += 1
                    self.dropped_samples += len(oldest.samples)

    def get(self, timeout: float) -> RawBlock | Control | EndOfAudio | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def max_blocks(self) -> int:
        """The most blocks it holds before it drops."""
        return self._queue.maxsize


class AudioSource(Protocol):
    """Delivers audio into a capture queue from its own thread or callback."""

    name: str
    rate: int  # sample rate of the blocks it delivers
    duration: float | None  # seconds, when known (files)
    block_s: float  # seconds of audio per block it delivers

    def start(self, sink: CaptureQueue) -> None: ...

    def stop(self) -> None: ...
