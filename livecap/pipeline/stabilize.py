"""LocalAgreement-2 for interim captions: commit what two successive hypotheses agree on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interim:
    """An interim caption: `committed` no longer changes; `tail` may."""

    committed: str
    tail: str

    @property
    def text(self) -> str:
        return f"{self.committed} {self.tail}".strip()


def _key(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


class LocalAgreement:
    """Stabilises the interim hypotheses of one utterance (reset when the utterance ends)."""

    def __init__(self) -> None:
        self._previous: list[str] = []
        self._committed: list[str] = []

    def update(self, hypothesis: str) -> Interim:
        words = hypothesis.split()
        agreed = 0
        for a, b in zip(self._previous, words):
            if _key(a) != _key(b):
                break
            agreed += 1
        if agreed > len(self._committed):
            self._committed = words[:agreed]
        self._previous = words
        # The committed prefix never changes; the tail is the latest hypothesis past it.
        return Interim(" ".join(self._committed), " ".join(words[len(self._committed) :]))

    def reset(self) -> None:
        self._previous = []
        self._committed = []
