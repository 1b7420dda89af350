"""The offline policy: pack consecutive utterances into one Whisper window.

Whisper always encodes 30 s of audio, so transcribing short utterances one by one wastes most of
each encode. For files (not live), utterances are joined, silences between them removed, until the
window is full; timestamps map back to the stream through `Utterance.pieces`.
"""

from __future__ import annotations

import numpy as np

from livecap.messages import Utterance

WHISPER_WINDOW_S = 30.0


class Packer:
    """Joins final utterances up to `max_seconds` of audio."""

    def __init__(self, max_seconds: float = WHISPER_WINDOW_S - 1.0) -> None:
        self.max_seconds = max_seconds
        self._held: list[Utterance] = []

    def push(self, utterance: Utterance) -> list[Utterance]:
        """Add an utterance; returns a packed one when the window would overflow."""
        out = []
        if self._held and sum(u.duration for u in self._held) + utterance.duration > self.max_seconds:
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
            pieces.append((offset, u.start, u.end))
            offset += u.duration
        last = held[-1]
        return [
            Utterance(
                stream_id=last.stream_id,
                seq=held[0].seq,
                start=held[0].start,
                end=last.end,
                samples=np.concatenate([u.samples for u in held]),
                final=True,
                t_speech_end=last.t_speech_end,
                t_emitted=last.t_emitted,
                pieces=tuple(pieces),
            )
        ]
