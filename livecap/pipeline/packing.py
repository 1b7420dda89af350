"""The offline policy: pack consecutive utterances into one Whisper window.

Whisper always encodes 30 s of audio, so transcribing short utterances one by one wastes most of
each encode. For files (not live), utterances are joined, silences between them removed, until the
window is full; timestamps map back to the stream through `Utterance.pieces`.

Each packed utterance is brought to one speech level first. Whisper treats quieter speech next to
louder speech in the same window as background and leaves it out, so without this a quiet or far
speaker packed beside a loud one was lost in file mode, though live mode (one utterance per window)
heard it.
"""

from __future__ import annotations

import numpy as np

from livecap.messages import Utterance

WHISPER_WINDOW_S = 30.0
# speech level (RMS of its loud frames) each packed utterance is brought to (-20 dBFS)
TARGET_LEVEL = 0.1
MAX_GAIN = 30.0  # +30 dB at most, so that near-silence is not blown up
MIN_GAIN = 0.25  # -12 dB at most


def speech_level(samples: np.ndarray, frame: int = 480) -> float:
    """RMS of the loudest tenth of 30 ms frames: the level of the speech, not of its pauses."""
    count = len(samples) // frame
    if count == 0:
        return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
    rms = np.sqrt(np.mean(samples[: count * frame].reshape(count, frame) ** 2, axis=1))
    return float(np.percentile(rms, 90))


def levelled(samples: np.ndarray) -> np.ndarray:
    """The samples brought to the target speech level, within the gain limits."""
    level = speech_level(samples)
    gain = float(np.clip(TARGET_LEVEL / level, MIN_GAIN, MAX_GAIN)) if level > 0 else 1.0
    return np.clip(samples * gain, -1.0, 1.0).astype(np.float32, copy=False)


class Packer:
    """Joins final utterances up to `max_seconds` of audio."""

    def __init__(self, max_seconds: float = WHISPER_WINDOW_S - 1.0) -> None:
        self.max_seconds = max_seconds
        self._held: list[Utterance] = []

    def push(self, utterance: Utterance) -> list[Utterance]:
        """Add an utterance; returns a packed one when the window would overflow."""
        out = []
        if (
            self._held
            and sum(u.duration for u in self._held) + utterance.duration > self.max_seconds
        ):
            out = self.flush()
        self._held.append(utterance)
        return out

    def flush(self) -> list[Utterance]:
        if not self._held:
            return []
        held, self._held = self._held, []
        if len(held) == 1:
            return held
        pieces = []
        offset = 0.0
        for u in held:
            pieces.append((offset, u.start, u.end, u.speech_until))
            offset += u.duration
        last = held[-1]
        return [
            Utterance(
                stream_id=last.stream_id,
                seq=held[0].seq,
                start=held[0].start,
                end=last.end,
                samples=np.concatenate([levelled(u.samples) for u in held]),
                final=True,
                t_speech_end=last.t_speech_end,
                t_emitted=last.t_emitted,
                pieces=tuple(pieces),
                speech_until=last.speech_until,
            )
        ]
