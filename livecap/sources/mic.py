"""The microphone as an audio source: a PortAudio input
stream (sounddevice) feeding the capture queue.

The stream callback only copies each block into the capture queue (which never blocks and counts
overflow). Audio is captured at a rate the device supports and resampled to 16 kHz by `converter()`,
which the VAD thread calls. A device that stops delivering ends the stream with what was heard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE
from livecap.sources.queue import CaptureQueue, RawBlock
from livecap.sources.resample import converter_from

BLOCK_S = 0.1  # the capture queue is sized in blocks of this length
STALL_S = 5.0  # an open stream that delivers nothing for this long has lost its device
CLOSE_WAIT_S = 2.0  # closing a stalled device can hang: wait this long, then go on without it

INSTALL_HINT = (
    "install PortAudio (Debian/Ubuntu: apt-get install libportaudio2; Fedora: dnf install "
    "portaudio; "
    "macOS: brew install portaudio) and pip install 'livecap[mic]'"
)


def _sounddevice() -> ModuleType:
    """Import sounddevice, turning a missing PortAudio or package into a one-line error."""
    try:
        import sounddevice
    except OSError:
        raise LivecapError(f"the PortAudio library is missing: {INSTALL_HINT}") from None
    except ImportError:
        raise LivecapError(
            "microphone support is not installed: pip install 'livecap[mic]'"
        ) from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    """An audio input device as PortAudio lists it."""
    index: int
    name: str
    channels: int
    default_rate: float
    is_default: bool


def list_input_devices() -> list[InputDevice]:
    """Every device PortAudio can record from, the default one marked."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        default = sd.default.device[0]  # -1 when there is none
    except sd.PortAudioError as error:
        raise LivecapError(f"cannot list audio devices: {error}") from None
    return [
        InputDevice(
            d["index"],
            d["name"],
            d["max_input_channels"],
            d["default_samplerate"],
            d["index"] == default,
        )
        for d in devices
        if d["max_input_channels"] > 0
    ]


def find_device(spec: str | None) -> InputDevice:
    """The device named by index or name substring
    (case-insensitive); the default when `spec` is None."""
    devices = list_input_devices()
    if spec is None:
        if not devices:
            raise LivecapError(
                "no audio input device found: connect a microphone (`livecap devices` lists them)"
            )
        return next((d for d in devices if d.is_default), devices[0])
    if spec.strip().isdigit():
        found = [d for d in devices if d.index == int(spec)]
    else:
        found = [d for d in devices if d.name.lower() == spec.lower()] or [
            d for d in devices if spec.lower() in d.name.lower()
        ]
    if not found:
        raise LivecapError(f"no input device matches {spec!r}; `livecap devices` lists them")
    if len(found) > 1:
        names = ", ".join(f"{d.index}: {d.name}" for d in found)
        raise LivecapError(f"--device {spec!r} matches several devices ({names}); give an index")
    return found[0]


class MicSource:
    """A microphone: opens the device at `rate`, by default
    16 kHz when it can, else at its default rate."""

    duration = None
    block_s = BLOCK_S

    def __init__(self, device: str | None = None, rate: int | None = None) -> None:
        self._sd = _sounddevice()
        self.device = find_device(device)
        self.name = f"mic:{self.device.name}"
        self.rate = self._pick_rate(
            (rate,) if rate else (SAMPLE_RATE, int(self.device.default_rate))
        )
        self._sink: CaptureQueue | None = None
        self._ended = threading.Event()
        self._end_lock = threading.Lock()
        self._last_block = 0.0
        try:
            self._stream = self._sd.InputStream(
                device=self.device.index,
                channels=1,
                samplerate=self.rate,
                dtype="float32",
                blocksize=int(self.rate * BLOCK_S),
                callback=self._callback,
                finished_callback=self._finished,
            )
        except (self._sd.PortAudioError, ValueError) as error:
            raise LivecapError(f"cannot open audio device {self.device.name!r}: {error}") from None

    def _pick_rate(self, rates: tuple[int, ...]) -> int:
        for rate in rates:
            try:
                self._sd.check_input_settings(
                    device=self.device.index, channels=1, samplerate=rate, dtype="float32"
                )
                return rate
            except (self._sd.PortAudioError, ValueError):
                continue
        tried = " or ".join(f"{rate} Hz" for rate in dict.fromkeys(rates))
        raise LivecapError(f"audio device {self.device.name!r} cannot record mono audio at {tried}")

    def converter(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Resampling to 16 kHz for the VAD thread; None when the audio already is 16 kHz."""
        return converter_from(self.rate)

    def start(self, sink: CaptureQueue) -> None:
        self._sink = sink
        self._last_block = time.monotonic()
        try:
            self._stream.start()
        except self._sd.PortAudioError as error:
            self._end(f"audio device stopped: {error}")
            return
        threading.Thread(target=self._watch, name="mic-watch", daemon=True).start()

    def stop(self) -> None:
        """Close the device; everything captured so far is still transcribed."""
        self._end(None)
        closer = threading.Thread(
            target=self._stream.close, kwargs={"ignore_errors": True}, daemon=True
        )
        closer.start()
        closer.join(CLOSE_WAIT_S)

    # -- PortAudio threads -------------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
        """Never blocks: copy the block and offer it (a full queue drops and counts it)."""
        self._last_block = time.monotonic()
        block = RawBlock(indata[:, 0].copy(), self._last_block)
        self._sink.offer(block)  # type: ignore[union-attr]

    def _finished(self) -> None:
        """PortAudio ended the stream (device gone or error) unless we closed it."""
        self._end("audio device stopped: the stream ended")

    def _watch(self) -> None:
        """End the stream when the device goes silent at the
        PortAudio level (unplugged, server gone)."""
        while not self._ended.wait(BLOCK_S):
            if time.monotonic() - self._last_block > STALL_S:
                self._end(
                    f"audio device stopped: no audio from {self.device.name!r} for {STALL_S:.0f} s"
                )

    def _end(self, error: str | None) -> None:
        """Once: mark the end of audio, with `error` when the
        device failed (stop() closes the device)."""
        with self._end_lock:
            if self._ended.is_set():
                return
            self._ended.set()
        if self._sink is not None:
            self._sink.end(error)
