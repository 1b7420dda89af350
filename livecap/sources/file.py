"""Media files as a source: decoding any format FFmpeg reads into 16 kHz mono blocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE
from livecap.sources.queue import CaptureQueue, RawBlock


def _open_container(path: Path):  # noqa: ANN202 - av types are optional to name
    import av

    if not path.exists():
        raise LivecapError(f"{path}: no such file")
    if path.is_dir():
        raise LivecapError(f"{path}: is a directory, not an audio or video file")
    if path.stat().st_size == 0:
        raise LivecapError(f"{path}: empty file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise LivecapError(f"{path}: not a readable audio or video file ({_reason(error)})") from None
    if not container.streams.audio:
        container.close()
        raise LivecapError(f"{path}: has no audio track")
    return container


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error).split(":")[0] or type(error).__name__


def decode_blocks(path: Path, block_s: float = 0.5) -> Iterator[np.ndarray]:
    """Decode any format FFmpeg reads (audio, or the audio track of a video) into 16 kHz mono blocks."""
    import av

    container = _open_container(path)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    block = int(block_s * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    pending_len = 0
    decoded_any = False
    try:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                pending.append(out.to_ndarray().reshape(-1))
                pending_len += out.samples
            while pending_len >= block:
                joined = np.concatenate(pending)
                decoded_any = True
                yield joined[:block].astype(np.float32) / 32768.0
                pending, pending_len = [joined[block:]], pending_len - block
        for out in resampler.resample(None):
            pending.append(out.to_ndarray().reshape(-1))
        tail = np.concatenate(pending) if pending else np.zeros(0, np.int16)
        if len(tail):
            decoded_any = True
            yield tail.astype(np.float32) / 32768.0
    except av.error.FFmpegError as error:
        if not decoded_any:
            raise LivecapError(f"{path}: not a readable audio or video file ({_reason(error)})") from None
        raise LivecapError(f"{path}: decoding stopped early, the file is damaged ({_reason(error)})") from None
    finally:
        container.close()
    if not decoded_any:
        raise LivecapError(f"{path}: contains no audio samples")


def probe_duration(path: Path) -> float | None:
    """Duration in seconds from the container, checking that the file opens as media."""
    container = _open_container(path)
    try:
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return container.duration / 1_000_000 if container.duration else None
    finally:
        container.close()


class FileSource:
    """A media file as a source: as fast as the pipeline takes it, or paced at 1x (`realtime`)."""

    rate = SAMPLE_RATE

    def __init__(self, path: Path, realtime: bool = False, block_s: float = 0.1) -> None:
        self.path = path
        self.name = str(path)
        self.realtime = realtime
        self.block_s = block_s if realtime else 0.5
        self.duration = probe_duration(path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: CaptureQueue) -> None:
        self._thread = threading.Thread(target=self._run, args=(sink,), name="file-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, sink: CaptureQueue) -> None:
        error = None
        t0 = time.monotonic()
        position = 0
        try:
            for samples in decode_blocks(self.path, self.block_s):
                position += len(samples)
                if self.realtime:  # a live source: deliver each block when it would have been captured
                    due = t0 + position / SAMPLE_RATE
                    if self._stop.wait(max(0.0, due - time.monotonic())):
                        break
                    sink.offer(RawBlock(samples, time.monotonic()))
                elif not sink.put(RawBlock(samples, time.monotonic()), self._stop):
                    break
        except LivecapError as failure:
            error = str(failure)
        sink.end(error)
