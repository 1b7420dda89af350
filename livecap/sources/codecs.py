"""Audio as network clients send it, decoded to float32 mono: raw PCM and G.711 frames (pure numpy),
and compressed audio in a container (Ogg or WebM Opus from a browser's MediaRecorder, any format
FFmpeg reads) that arrives in pieces, decoded by PyAV on its own thread, never the caller's."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from livecap.messages import SAMPLE_RATE

# WebM is Matroska
MAGIC = {b"OggS": "ogg", b"\x1a\x45\xdf\xa3": "matroska", b"RIFF": "wav", b"fLaC": "flac"}
OPUS_FORMATS = ("ogg", "matroska")
START_OPTIONS = {"analyzeduration": "0"}  # start at the first packets: a live stream


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """µ-law and A-law byte -> sample tables (ITU-T G.711), scaled to [-1, 1]."""
    codes = np.arange(256)
    u = ~codes & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    mulaw = np.where(u & 0x80, -magnitude, magnitude)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    alaw = np.where(a & 0x80, magnitude, -magnitude)
    return (mulaw / 32768.0).astype(np.float32), (alaw / 32768.0).astype(np.float32)


MULAW, ALAW = _g711_tables()


def g711(data: bytes, table: np.ndarray) -> np.ndarray:
    """G.711 bytes (one sample each) as float32 samples."""
    return table[np.frombuffer(data, dtype=np.uint8)]


def downmix(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved samples of `channels` channels as their
    mean (whole frames only: the caller checks)."""
    return (
        samples if channels == 1 else samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    )


class _Pipe:
    """Bytes written by one thread, read by PyAV on another; `read` waits for data or the end."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ready = threading.Condition()
        self._closed = False
        self._discarding = False

    def write(self, data: bytes) -> int:
        with self._ready:
            if self._discarding:
                return 0
            self._data += data
            self._ready.notify()
            return len(self._data)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def discard(self) -> None:
        """The reader has stopped: drop what waits and whatever comes."""
        with self._ready:
            self._closed = self._discarding = True
            self._data.clear()

    def peek(self, size: int) -> bytes:
        """The first `size` bytes, without taking them (fewer only at the end)."""
        with self._ready:
            while len(self._data) < size and not self._closed:
                self._ready.wait()
            return bytes(self._data[:size])

    def read(self, size: int = -1) -> bytes:
        with self._ready:
            while not self._data and not self._closed:
                self._ready.wait()
            size = len(self._data) if size < 0 else min(size, len(self._data))
            out = bytes(self._data[:size])
            del self._data[:size]
            return out


class ContainerDecoder:
    """Decodes a container stream fed in pieces (`feed`, then `close`) on its own thread, handing
    16 kHz mono float32 to `on_audio` and, at the end, `on_end(error)` (None: all decoded).
    `opus_only` refuses anything but Opus in Ogg or WebM. What waits to be decoded is bounded:
    `feed` returns False past `max_pending` bytes."""

    def __init__(
        self,
        on_audio: Callable[[np.ndarray], None],
        on_end: Callable[[str | None], None],
        *,
        max_pending: int,
        opus_only: bool = True,
        name: str = "decode",
    ) -> None:
        self._on_audio, self._on_end = on_audio, on_end
        self._max_pending = max_pending
        self._opus_only = opus_only
        self._pipe = _Pipe()
        self.bytes_in = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> bool:
        self.bytes_in += len(data)
        return self._pipe.write(data) <= self._max_pending

    def close(self) -> None:
        """No more input: what was fed is decoded, then `on_end` is called."""
        self._pipe.close()

    def _run(self) -> None:
        try:
            error = self._decode()
        except Exception as failure:
            # PyAV's errors (damaged or foreign data) end the stream with a reason
            error = f"the audio cannot be decoded: {getattr(failure, 'strerror', None) or failure}"
        if error is not None:
            self._pipe.discard()
        self._on_end(error)

    def _decode(self) -> str | None:
        """Decode until the end of the input; the reason it cannot, or None. The container is known
        from its first bytes (probing garbage would wait for a megabyte of it)."""
        import av

        head = self._pipe.peek(4)
        kind = MAGIC.get(head)
        if kind is None or (self._opus_only and kind not in OPUS_FORMATS):
            if not head:
                return None  # no audio at all
            return (
                "expected Opus in Ogg or WebM"
                if self._opus_only
                else "expected Ogg, WebM, WAV or FLAC audio"
            )
        with av.open(self._pipe, mode="r", format=kind, options=START_OPTIONS) as container:
            if not container.streams.audio:
                return "the stream has no audio track"
            stream = container.streams.audio[0]
            if self._opus_only and stream.codec_context.name != "opus":
                return f"expected Opus, got {stream.codec_context.name}"
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for packet in container.demux(stream):
                for frame in packet.decode():
                    self._hand_on(resampler.resample(frame))
            self._hand_on(resampler.resample(None))
        return None

    def _hand_on(self, frames: list) -> None:  # noqa: ANN401 - av.AudioFrame
        for frame in frames:
            self._on_audio(frame.to_ndarray().reshape(-1).astype(np.float32, copy=False))


class _Sink:
    """What a PyAV muxer writes, taken away as it comes."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


class OggOpusEncoder:
    """Float32 mono audio at `rate` as Ogg Opus (libopus through PyAV) in pages of `page_s`, so a
    live publisher sends compressed audio with little delay; `encode` gives what is ready."""

    def __init__(self, rate: int, bitrate: int = 32_000, page_s: float = 0.1) -> None:
        import av

        self._sink = _Sink()
        self._container = av.open(
            self._sink, mode="w", format="ogg", options={"page_duration": str(int(page_s * 1e6))}
        )
        self._stream = self._container.add_stream("libopus", rate=48_000, layout="mono")
        self._stream.bit_rate = bitrate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        self._rate = rate
        self._pts = 0

    def encode(self, samples: np.ndarray) -> bytes:
        import av

        frame = av.AudioFrame.from_ndarray(
            np.clip(samples, -1, 1).reshape(1, -1).astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts = self._rate, self._pts
        self._pts += len(samples)
        for resampled in self._resampler.resample(frame):
            self._mux(resampled)
        return self._sink.take()

    def close(self) -> bytes:
        """The rest, and the end of the stream."""
        for resampled in self._resampler.resample(None):
            self._mux(resampled)
        self._mux(None)
        self._container.close()
        return self._sink.take()

    def _mux(self, frame: object) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
