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
TONAL_FLATNESS_LOG10 = -3.5  # below: a hum or buzz, not speech (see `tonal`)
# Soft speech (see `Segmenter`): faint sound this close to speech belongs to it (faster-whisper's
# own VAD merges speech up to 2 s apart), and an utterance reaches back at most this far for it
JOIN_GAP_S = 2.0
JOIN_REACH_S = 4.0
# A live final's audio ends TAIL_MS into its pause (at most `speech_pad_ms`), so that its decode can
# start then; the rest of the pad is given to Whisper as digital silence (`final_audio`)
TAIL_MS = 200
# Live, an utterance longer than this part of `max_utterance_s` ends at shorter and shorter pauses
# (`Segmenter._silence_needed`); a shorter one keeps its whole context
PAUSE_SHRINKS_FROM = 0.5


@functools.cache
def _session():  # noqa: ANN202 - onnxruntime.InferenceSession
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


def _zero_state() -> np.ndarray:
    return np.zeros((2, 1, 1, 128), dtype=np.float32)


class SileroVad:
    """Silero VAD run statefully, one instance per stream, with its recurrent state put
    back to zeros at safe points so that a loud past cannot suppress a quieter speaker.

    Kept forever, the LSTM state learns the loud speaker's level: a quiet, far or reverberant voice
    that follows gets probabilities far below a fresh detector's, and silence does not clear the
    state (README, How it works, has the figures). So the state is reset (1) after `quiet_ms` of
    probabilities below `neg_threshold` once speech was seen since the last reset (the speaker
    stopped), and (2) every `period_s` whatever the audio (loud noise followed by quiet speech;
    bounds what an hour can hold). After a reset the last `warm_ms` of audio are replayed through
    the fresh state and their outputs discarded, so a reset adds no delay; the replay must not reach
    back into the speech before the pause (a longer replay re-learns the loud level). Decisions are
    made window by window, so results do not depend on the block size of the calls."""

    def __init__(
        self,
        threshold: float = 0.5,
        neg_threshold: float = 0.35,
        quiet_ms: float = 500.0,
        warm_ms: float = 512.0,
        period_s: float = 10.0,
    ) -> None:
        self._session = _session()
        self.threshold, self.neg_threshold = threshold, neg_threshold
        self._quiet_windows = max(1, round(quiet_ms * SAMPLE_RATE / 1000 / WINDOW))
        self._warm_windows = min(round(warm_ms * SAMPLE_RATE / 1000 / WINDOW), self._quiet_windows)
        self._period_windows = max(1, round(period_s * SAMPLE_RATE / WINDOW))
        self.resets = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new stream, or a gap in the audio (dropped blocks)."""
        self._state = _zero_state()
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)
        # windows fed to the model
        self._history: deque[np.ndarray] = deque(maxlen=self._warm_windows + 1)
        self._quiet = 0  # consecutive windows below neg_threshold
        self._armed = False  # speech seen since the last reset
        self._since = 0  # windows since the last reset

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability for each complete window; a partial window waits for the next call."""
        audio = np.concatenate([self._rest, samples]) if len(self._rest) else samples
        count = len(audio) // WINDOW
        self._rest = audio[count * WINDOW :].copy()
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        windows = audio[: count * WINDOW].reshape(count, WINDOW).astype(np.float32, copy=False)
        out = []
        start = 0
        while start < count:
            probs, state = self._run(windows[start:], self._context, self._state)
            cut = self._reset_point(probs)
            taken = len(probs) if cut is None else cut + 1
            out.append(probs[:taken])
            self._history.extend(windows[start : start + taken])
            self._context = windows[start + taken - 1, -CONTEXT:].copy()
            if cut is None:
                self._state = state
            else:  # the windows after the reset point are run again from the fresh, warmed-up state
                self._restart()
            start += taken
        return np.concatenate(out)

    def _run(
        self, windows: np.ndarray, context: np.ndarray, state: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        contexts = np.concatenate([context[None, :], windows[:-1, -CONTEXT:]])
        probs, h, c = self._session.run(
            None,
            {"input": np.concatenate([contexts, windows], axis=1), "h": state[0], "c": state[1]},
        )
        return np.asarray(probs, dtype=np.float32).reshape(-1), np.stack([h, c])

    def _reset_point(self, probs: np.ndarray) -> int | None:
        """Count windows; the index of the window after which the state resets, or None."""
        for index, prob in enumerate(probs):
            self._since += 1
            self._armed |= bool(prob >= self.threshold)
            self._quiet = self._quiet + 1 if prob < self.neg_threshold else 0
            if (
                self._armed and self._quiet >= self._quiet_windows
            ) or self._since >= self._period_windows:
                return index
        return None

    def _restart(self) -> None:
        """Zero the state, then warm it up on the last
        windows (the oldest one only gives context)."""
        state = _zero_state()
        history = list(self._history)
        if self._warm_windows and len(history) > 1:
            _, state = self._run(np.stack(history[1:]), history[0][-CONTEXT:].copy(), state)
        self._state = state
        self._quiet, self._armed, self._since = 0, False, 0
        self.resets += 1


def tonal(samples: np.ndarray) -> bool:
    """True for voice-like sound that is not speech: a hum, a buzz, a held tone. Silero passes such
    sound (a synthetic 150 Hz buzz with syllable-rate modulation: 2-6 utterances a minute) and
    Whisper writes words on it with scores inside the range of real speech. Speech has noise-like
    consonants and broad formants; a buzz is a few harmonics: over 100-4000 Hz, the median spectral
    flatness of the loud frames was -8.2 to -4.0 (log10) for buzz utterances and -2.8 to -1.2 for
    all 96 speech utterances of the test stream (clean, far, quiet, reverberant, phone-band).
    Singing or whistling may look tonal too."""
    frame, hop = 512, 256
    if len(samples) < frame:
        return False
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop] * np.hanning(frame)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(frame, 1 / SAMPLE_RATE)
    band = power[:, (freqs >= 100) & (freqs <= 4000)]
    energy = band.sum(axis=1)
    loud = band[energy > energy.max() * 0.01]  # frames within 20 dB of the loudest
    flatness = np.exp(np.mean(np.log(loud), axis=1)) / np.mean(loud, axis=1)
    return float(np.log10(np.median(flatness) + 1e-12)) < TONAL_FLATNESS_LOG10


@dataclass
class _Soft:
    """Faint sound not yet in an utterance: windows between the two thresholds, or bursts of speech
    too short to stand alone; the next utterance takes it in, or it goes alone or is dropped."""

    start: int  # first sample it holds (pre-roll included)
    until: int  # it joins an utterance that opens before this sample
    anchored: bool  # it began soon after an utterance: part of a turn, not a lone blip
    burst: tuple[int, int] | None = None  # (speech end, end) of the last short burst it holds


@dataclass
class _Open:
    """The utterance being spoken."""

    start: int  # first sample kept (pre-roll included), absolute stream sample index
    speech_start: int  # first speech sample
    last_speech: int  # end of the last window above the threshold
    silence_since: int | None  # start of the current run of windows below neg_threshold


class Segmenter:
    """Cut a stream of 16 kHz audio into utterances; one instance per stream.

    No faint speech is thrown away for being faint or short: a soft phrase between two sentences
    often gives Silero a single window above the threshold, or none, with its neighbours between
    the two thresholds. So a pause shorter than JOIN_GAP_S between two utterances belongs to the
    later one, whatever Silero said of it; other faint sound (`_Soft`: windows above
    `vad_neg_threshold`, and bursts shorter than `min_speech_ms`) is taken into the next utterance
    when one opens within JOIN_GAP_S of it; otherwise a short burst that came within JOIN_GAP_S
    after an utterance goes alone, for Whisper and its guards to judge, and a lone faint sound far
    from any speech is dropped. All decisions depend on the audio alone, window by window."""

    def __init__(self, options: VadConfig, stream_id: str = "0", *, live: bool = False) -> None:
        """`live`: a final's audio ends TAIL_MS into its pause, for speculative decoding (see
        `tentative`); a file's keeps `speech_pad_ms` of real audio."""
        self.options = options
        self.live = live
        self.stream_id = stream_id
        self.vad = SileroVad(options.vad_threshold, options.vad_neg_threshold)
        self._pad = int(options.speech_pad_ms * SAMPLE_RATE / 1000)
        self._min_silence = int(options.min_silence_ms * SAMPLE_RATE / 1000)
        self._min_pause = min(self._min_silence, int(options.min_pause_ms * SAMPLE_RATE / 1000))
        self._min_speech = int(options.min_speech_ms * SAMPLE_RATE / 1000)
        self._max_len = int(options.max_utterance_s * SAMPLE_RATE)
        self._join_gap, self._reach = int(JOIN_GAP_S * SAMPLE_RATE), int(JOIN_REACH_S * SAMPLE_RATE)
        self._tail = min(self._pad, int(TAIL_MS * SAMPLE_RATE / 1000)) if live else self._pad
        self._tentative_since: int | None = None  # the pause whose tentative final was handed out
        # kept audio, starting at stream sample `_audio_start`
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0
        self._probs: list[float] = []  # probabilities of the open utterance's windows
        self._position = 0  # stream samples seen by the VAD (whole windows)
        self._received = 0  # stream samples received
        # (end sample, capture time) per chunk
        self._captures: deque[tuple[int, float]] = deque(maxlen=512)
        self._open: _Open | None = None
        self._last_end = 0  # end of the previous utterance: pre-roll never reaches before it
        self._last_speech: int | None = None  # last speech sample of the previous utterance
        self._soft: _Soft | None = None
        self.rejected_tonal = 0  # utterances dropped as a hum or buzz
        self.next_seq = 0

    @property
    def in_speech(self) -> bool:
        return self._open is not None

    @property
    def speech_start(self) -> float | None:
        """Stream seconds where the open utterance's speech began (None outside speech)."""
        return self._open.speech_start / SAMPLE_RATE if self._open is not None else None

    @property
    def position_s(self) -> float:
        return self._position / SAMPLE_RATE

    def discard(self) -> int | None:
        """Drop the open utterance unheard (a client's "clear"); its number is never used, so an
        interim of it still in flight is stale; faint sound held for the next utterance goes too.
        Returns that number, or None outside speech."""
        if self._soft is not None:
            self._soft = None
            self._last_end = max(self._last_end, self._position)
        if self._open is None:
            return None
        dropped = self.next_seq
        self._open = None
        self._probs = []
        self._last_end = self._position
        self.next_seq += 1
        return dropped

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
        finished = []
        current = self._open
        if current is not None:
            end = min(current.last_speech + self._pad, self._received)
            # windows between the two thresholds since the last speech window may be soft speech
            until = end if current.silence_since is None else min(current.silence_since, end)
            finished = self._close(current.last_speech, end, now, until)
        return finished + self._release_soft(now)

    def open_utterance(self, now: float) -> Utterance | None:
        """The open utterance so far, for an interim transcription; None once its tentative final
        was handed out (the pause goes on: that decode gives its words)."""
        if self._open is None or self._position - self._open.speech_start < self._min_speech:
            return None
        paused = self._open.silence_since
        if paused is not None and paused == self._tentative_since:
            return None
        end = self._position
        if self._tonal(self._open.start, end):
            return None
        return self._utterance(self._open.start, end, end, now, final=False)

    def _step(self, prob: float, window_end: int, now: float, finished: list[Utterance]) -> None:
        opts = self.options
        current = self._open
        if current is None:
            if prob >= opts.vad_threshold:
                self._start_utterance(prob, window_end)
            elif prob >= opts.vad_neg_threshold:
                self._hold_soft(window_end - WINDOW - self._pad, window_end)
            elif self._soft is not None and window_end > self._soft.until:
                finished.extend(self._release_soft(now))
            return
        self._probs.append(prob)
        if prob >= opts.vad_threshold:
            current.last_speech = window_end
            current.silence_since = None
        elif prob < opts.vad_neg_threshold and current.silence_since is None:
            current.silence_since = window_end - WINDOW
        if (
            current.silence_since is not None
            and window_end - current.silence_since >= self._silence_needed(current)
        ):
            end = min(current.silence_since + self._tail, window_end)
            finished.extend(self._close(current.silence_since, end, now))
        elif window_end - current.start >= self._max_len:
            finished.extend(self._cut_at_quietest(current, window_end, now))

    def _silence_needed(self, current: _Open) -> int:
        """The pause that ends the open utterance: `min_silence_ms`; live, past PAUSE_SHRINKS_FROM
        of `max_utterance_s`, less as it grows, down to `min_pause_ms` at the limit. A long run of
        speech then ends at a short pause (a breath between phrases) instead of being cut
        mid-speech at the limit, and its caption comes seconds sooner."""
        if not self.live:
            return self._min_silence
        length = (current.silence_since - current.start) / self._max_len
        grown = min(1.0, max(0.0, (length - PAUSE_SHRINKS_FROM) / (1 - PAUSE_SHRINKS_FROM)))
        return int(self._min_silence - (self._min_silence - self._min_pause) * grown)

    def tentative(self, now: float) -> Utterance | None:
        """The final the open utterance will be if its pause goes on, once all its audio is here
        (`TAIL_MS` into the pause), once per pause: decoded at once, it is ready about when the
        pause is long enough to end the utterance; if speech resumes it is not used."""
        current = self._open
        if current is None or current.silence_since in (None, self._tentative_since):
            return None
        end = current.silence_since + self._tail
        if self._position < end or current.silence_since - current.speech_start < self._min_speech:
            return None
        self._tentative_since = current.silence_since
        if tonal(self._audio[current.start - self._audio_start : end - self._audio_start]):
            return None  # its close will count it
        return self._utterance(
            current.start, end, current.silence_since, now, final=True, numbered=False
        )

    def final_audio(self, utterance: Utterance) -> np.ndarray:
        """What a final decodes: its audio, live followed by digital silence for the part of
        `speech_pad_ms` a live final does not wait for (Whisper reads an utterance cut right after
        its speech worse: it drops final words and punctuation)."""
        silence = self._pad - self._tail
        if not silence:
            return utterance.samples
        return np.concatenate([utterance.samples, np.zeros(silence, np.float32)])

    def _start_utterance(self, prob: float, window_end: int) -> None:
        """Open an utterance at a speech window. Its pre-roll takes in the soft sound before it, and
        the whole pause since the previous utterance when that is short: what the VAD heard nothing
        in gets a second look by Whisper, with the speech after it as context."""
        speech_start = window_end - WINDOW
        start = speech_start - self._pad
        if self._last_speech is not None and start - self._last_end <= self._join_gap:
            start = self._last_end
        if self._soft is not None:
            start = min(start, max(self._soft.start, speech_start - self._reach))
            self._soft = None
        self._open = _Open(
            max(start, self._last_end, self._audio_start), speech_start, window_end, None
        )
        self._probs = [prob]

    def _hold_soft(self, start: int, last: int, burst: tuple[int, int] | None = None) -> None:
        """Keep faint sound (or a short burst) from `start` to `last` for the next utterance."""
        gap = self._join_gap
        if self._soft is None:
            anchored = (
                self._last_speech is not None and start + self._pad - self._last_speech <= gap
            )
            self._soft = _Soft(max(start, self._last_end), last + gap, anchored)
        self._soft.until = last + gap
        self._soft.burst = burst or self._soft.burst

    def _release_soft(self, now: float) -> list[Utterance]:
        """No utterance came for the held sound: a short burst after an utterance goes alone."""
        soft, self._soft = self._soft, None
        if soft is None or soft.burst is None or not soft.anchored:
            return []
        (speech_end, end) = soft.burst
        start = max(soft.start, self._last_end, self._audio_start, speech_end - self._reach)
        self._last_end, self._last_speech = end, speech_end
        if self._tonal(start, end):
            return []
        return [self._utterance(start, end, speech_end, now, final=True)]

    def _cut_at_quietest(self, current: _Open, window_end: int, now: float) -> list[Utterance]:
        """Cut an over-long utterance at its quietest window
        in the later half; speech goes on after it."""
        probs = np.asarray(self._probs)
        first_window_end = window_end - (len(probs) - 1) * WINDOW
        half = len(probs) // 2
        quietest = half + int(np.argmin(probs[half:]))
        cut = first_window_end + quietest * WINDOW
        speech_end = min(current.last_speech, cut)
        kept = [] if self._tonal(current.start, cut) else [  # speech goes on: no pause in it
            self._utterance(
                current.start, cut, speech_end, now, final=True, until=cut, continued=True
            )
        ]
        self._probs = list(probs[quietest + 1 :])
        silence_since = (
            current.silence_since
            if current.silence_since and current.silence_since >= cut
            else None
        )
        self._open = _Open(cut, cut, max(current.last_speech, cut), silence_since)
        self._last_end = cut
        return kept

    def _close(
        self, speech_end: int, end: int, now: float, until: int | None = None
    ) -> list[Utterance]:
        """End the open utterance at `end`; its speech ended at `speech_end` (`until`, when the VAD
        still heard faint sound after it)."""
        current = self._open
        assert current is not None
        self._open = None
        self._probs = []
        if speech_end - current.speech_start < self._min_speech:
            # too short alone: held (see `_Soft`)
            self._hold_soft(current.start, speech_end, (speech_end, end))
            return []
        self._last_end, self._last_speech = end, speech_end
        if self._tonal(current.start, end):
            return []
        return [self._utterance(current.start, end, speech_end, now, final=True, until=until)]

    def _tonal(self, start: int, end: int) -> bool:
        """A hum or buzz that Silero took for speech (see `tonal`); counted, never transcribed."""
        if tonal(self._audio[start - self._audio_start : end - self._audio_start]):
            self.rejected_tonal += 1
            return True
        return False

    def _utterance(
        self, start: int, end: int, speech_end: int, now: float, final: bool, numbered: bool = True,
        until: int | None = None, continued: bool = False,
    ) -> Utterance:
        """`speech_end`: the last speech sample (its capture time is the latency's start);
        `until`: where the VAD heard the speech end, if later (what Whisper writes past it is judged
        invented, see `guards.drop_invented`)."""
        samples = self._audio[start - self._audio_start : end - self._audio_start].copy()
        seq = self.next_seq
        if final and numbered:
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
            speech_until=(speech_end if until is None else until) / SAMPLE_RATE,
            continued=continued,
        )

    def _capture_time(self, sample: int) -> float:
        """When a stream sample was captured, from the
        capture times of the chunks that carried it."""
        for end, t_capture in self._captures:
            if end >= sample:
                return t_capture - (end - sample) / SAMPLE_RATE
        end, t_capture = self._captures[-1]
        return t_capture - (end - sample) / SAMPLE_RATE

    def _trim(self) -> None:
        """Drop audio that no utterance can need any more (keeps memory bounded)."""
        keep_from = (
            self._open.start
            if self._open
            else max(self._position - self._pad - self._reach, self._last_end)
        )
        if self._soft is not None:
            keep_from = min(keep_from, self._soft.start)
        keep_from = max(keep_from, self._position - self._pad - self._max_len)
        if keep_from > self._audio_start:
            self._audio = self._audio[keep_from - self._audio_start :]
            self._audio_start = keep_from
