"""Streaming voice activity detection and utterance segmentation.

`SileroVad` runs the Silero VAD ONNX model (shipped with faster-whisper) on onnxruntime, statefully,
on 512-sample windows of audio fed in blocks of any size. `Segmenter` turns its probabilities into
utterances with hysteresis, pre-roll, an end-of-speech silence and a maximum length that is cut at
the quietest point. Both keep per-stream state only; the ONNX session is shared.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass

import numpy as np

from livecap.config import VadConfig
from livecap.messages import SAMPLE_RATE, AudioChunk, Utterance

WINDOW = 512  # samples per Silero window (32 ms at 16 kHz)
CONTEXT = 64  # samples of the previous window the model sees


@functools.cache
def _session():  # noqa: ANN202 - onnxruntime.InferenceSession
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


class SileroVad:
    """Silero VAD with its recurrent state kept between calls: one instance per stream."""

    def __init__(self) -> None:
        self._session = _session()
        self._state = np.zeros((2, 1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability for each complete window; a partial window waits for the next call."""
        audio = np.concatenate([self._rest, samples]) if len(self._rest) else samples
        count = len(audio) // WINDOW
        self._rest = audio[count * WINDOW :].copy()
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        windows = audio[: count * WINDOW].reshape(count, WINDOW).astype(np.float32, copy=False)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        probs, h, c = self._session.run(
            None, {"input": np.concatenate([contexts, windows], axis=1), "h": self._state[0], "c": self._state[1]}
        )
        self._state = np.stack([h, c])
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


@dataclass
class _Open:
    """The utterance being spoken."""

    start: int  # first sample kept (pre-roll included), absolute stream sample index
    speech_start: int  # first speech sample
    last_speech: int  # end of the last window above the threshold
    silence_since: int | None  # start of the current run of windows below neg_threshold


class Segmenter:
    """Cut a stream of 16 kHz audio into utterances; one instance per stream."""

    def __init__(self, options: VadConfig, stream_id: str = "0") -> None:
        self.options = options
        self.stream_id = stream_id
        self.vad = SileroVad()
        self._pad = int(options.speech_pad_ms * SAMPLE_RATE / 1000)
        self._min_silence = int(options.min_silence_ms * SAMPLE_RATE / 1000)
        self._min_speech = int(options.min_speech_ms * SAMPLE_RATE / 1000)
        self._max_len = int(options.max_utterance_s * SAMPLE_RATE)
        self._audio = np.zeros(0, dtype=np.float32)  # kept audio, starting at stream sample `_audio_start`
        self._audio_start = 0
        self._probs: list[float] = []  # probabilities of the open utterance's windows
        self._position = 0  # stream samples seen by the VAD (whole windows)
        self._received = 0  # stream samples received
        self._captures: deque[tuple[int, float]] = deque(maxlen=512)  # (end sample, capture time) per chunk
        self._open: _Open | None = None
        self._last_end = 0  # end of the previous utterance: pre-roll never reaches before it
        self.next_seq = 0

    @property
    def in_speech(self) -> bool:
        return self._open is not None

    def push(self, chunk: AudioChunk, now: float) -> list[Utterance]:
        """Feed audio; returns the utterances it completed (finals, in order)."""
        self._received += len(chunk.samples)
        self._captures.append((self._received, chunk.t_capture))
        self._audio = np.concatenate([self._audio, chunk.samples])
        finished: list[Utterance] = []
        for prob in self.vad(chunk.samples):
            window_end = self._position + WINDOW
            self._step(float(prob), window_end, now, finished)
            self._position = window_end
        self._trim()
        return finished

    def flush(self, now: float) -> list[Utterance]:
        """End of audio: close the open utterance, if it holds enough speech."""
        if self._open is None:
            return []
        end = min(self._open.last_speech + self._pad, self._received)
        return self._close(self._open.last_speech, end, now)

    def snapshot(self, now: float) -> Utterance | None:
        """The open utterance so far, for an interim transcription."""
        if self._open is None or self._position - self._open.speech_start < self._min_speech:
            return None
        end = self._position
        return self._utterance(self._open.start, end, end, now, final=False)

    def _step(self, prob: float, window_end: int, now: float, finished: list[Utterance]) -> None:
        opts = self.options
        current = self._open
        if current is None:
            if prob >= opts.vad_threshold:
                speech_start = window_end - WINDOW
                start = max(speech_start - self._pad, self._last_end, self._audio_start)
                self._open = _Open(start, speech_start, window_end, None)
                self._probs = [prob]
            return
        self._probs.append(prob)
        if prob >= opts.vad_threshold:
            current.last_speech = window_end
            current.silence_since = None
        elif prob < opts.vad_neg_threshold and current.silence_since is None:
            current.silence_since = window_end - WINDOW
        if current.silence_since is not None and window_end - current.silence_since >= self._min_silence:
            end = min(current.silence_since + self._pad, window_end)
            finished.extend(self._close(current.silence_since, end, now))
        elif window_end - current.start >= self._max_len:
            finished.extend(self._cut_at_quietest(current, window_end, now))

    def _cut_at_quietest(self, current: _Open, window_end: int, now: float) -> list[Utterance]:
        """Cut an over-long utterance at its quietest window in the later half; speech goes on after it."""
        probs = np.asarray(self._probs)
        first_window_end = window_end - (len(probs) - 1) * WINDOW
        half = len(probs) // 2
        quietest = half + int(np.argmin(probs[half:]))
        cut = first_window_end + quietest * WINDOW
        utterance = self._utterance(current.start, cut, min(current.last_speech, cut), now, final=True)
        self._probs = list(probs[quietest + 1 :])
        silence_since = current.silence_since if current.silence_since and current.silence_since >= cut else None
        self._open = _Open(cut, cut, max(current.last_speech, cut), silence_since)
        self._last_end = cut
        return [utterance]

    def _close(self, speech_end: int, end: int, now: float) -> list[Utterance]:
        current = self._open
        assert current is not None
        self._open = None
        self._probs = []
        self._last_end = end
        if speech_end - current.speech_start < self._min_speech:
            return []
        return [self._utterance(current.start, end, speech_end, now, final=True)]

    def _utterance(self, start: int, end: int, speech_end: int, now: float, final: bool) -> Utterance:
        samples = self._audio[start - self._audio_start : end - self._audio_start].copy()
        seq = self.next_seq
        if final:
            self.next_seq += 1
        return Utterance(
            stream_id=self.stream_id,
            seq=seq,
            start=start / SAMPLE_RATE,
            end=end / SAMPLE_RATE,
            samples=samples,
            final=final,
            t_speech_end=self._capture_time(speech_end),
            t_emitted=now,
        )

    def _capture_time(self, sample: int) -> float:
        """When a stream sample was captured, from the capture times of the chunks that carried it."""
        for end, t_capture in self._captures:
            if end >= sample:
                return t_capture - (end - sample) / SAMPLE_RATE
        end, t_capture = self._captures[-1]
        return t_capture - (end - sample) / SAMPLE_RATE

    def _trim(self) -> None:
        """Drop audio that no utterance can need any more (keeps memory bounded)."""
        keep_from = self._open.start if self._open else max(self._position - self._pad, self._last_end)
        keep_from = max(keep_from, self._position - self._pad - self._max_len)
        if keep_from > self._audio_start:
            self._audio = self._audio[keep_from - self._audio_start :]
            self._audio_start = keep_from
