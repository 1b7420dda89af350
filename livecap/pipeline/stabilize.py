"""LocalAgreement for interim captions: commit what a hypothesis agrees on with one of the two
before it."""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher


@dataclass(frozen=True)
class Interim:
    """An interim caption: `committed` no longer changes; `tail` may."""

    committed: str
    tail: str

    @property
    def text(self) -> str:
        return f"{self.committed} {self.tail}".strip()


AGREE_AFTER = 2  # agreeing words that let a single differing word before them commit
CARRY_MATCH = 2  # words a new utterance's hypothesis must begin with to carry committed words over


def _key(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def _agreed(previous: list[str], current: list[str]) -> int:
    """How many words of `current` its predecessor agrees with, from the start. A single word the
    two differ on ("Mr." and "Mister") does not stop the agreement when the AGREE_AFTER words after
    it agree in both: the current hypothesis's word is taken."""
    old, new = [_key(w) for w in previous], [_key(w) for w in current]
    agreed = 0
    while agreed < min(len(old), len(new)):
        after = slice(agreed + 1, agreed + 1 + AGREE_AFTER)
        if old[agreed] != new[agreed] and not (
            len(old[after]) == AGREE_AFTER and old[after] == new[after]
        ):
            break
        agreed += 1
    return agreed


class LocalAgreement:
    """Stabilises the interim hypotheses of one utterance (reset when the utterance ends).

    Agreement is sought past the committed words, each hypothesis aligned with them: a later
    hypothesis that rewrites a word already committed (Whisper often does on a growing window)
    no longer stops every word after it from committing until the final. A hypothesis is compared
    with the one before it and with the one before that: where Whisper reads a word one way, then
    another, then the first way again ("gaudy spring", "God-i-spring", "gaudy spring"), two of
    three agree and it commits instead of waiting for the final."""

    def __init__(self) -> None:
        self._previous: list[str] = []  # the previous hypothesis past the committed words
        self._last: list[str] = []  # the previous hypothesis, whole
        self._before_last: list[str] = []  # the one before it, whole
        self._committed: list[str] = []

    def update(self, hypothesis: str) -> Interim:
        words = hypothesis.split()
        tail = words[self._past_committed(words) :]
        agreed = _agreed(self._previous, tail)
        if self._before_last:
            before = self._before_last[self._past_committed(self._before_last) :]
            agreed = max(agreed, _agreed(before, tail))
        self._before_last, self._last = self._last, words
        self._committed += tail[:agreed]
        self._previous = tail[agreed:]
        # The committed prefix never changes; the tail is the latest hypothesis past it.
        return Interim(" ".join(self._committed), " ".join(self._previous))

    def _past_committed(self, words: list[str]) -> int:
        """Where the committed words end in a hypothesis: after the last of them it matches, plus
        as many words as the committed ones left after that match."""
        if not self._committed:
            return 0
        keys = [_key(w) for w in self._committed]
        aligned = SequenceMatcher(a=keys, b=[_key(w) for w in words], autojunk=False)
        matched = [block for block in aligned.get_matching_blocks() if block.size]
        if not matched:
            return min(len(keys), len(words))
        last = matched[-1]
        return min(len(words), last.b + last.size + len(keys) - (last.a + last.size))

    @property
    def committed(self) -> list[str]:
        return list(self._committed)

    def carry(self, shown: list[str], hypothesis: str) -> None:
        """Start a new utterance cut from the last one while speech went on (at the length limit):
        the words `shown` committed that the new utterance's first `hypothesis` begins with stay
        committed, so a word once committed on screen is not taken back at the cut."""
        keys = [_key(w) for w in shown]
        aligned = SequenceMatcher(a=keys, b=[_key(w) for w in hypothesis.split()], autojunk=False)
        for block in aligned.get_matching_blocks():
            if block.size and block.size >= min(CARRY_MATCH, len(keys) - block.a) and block.b <= 1:
                self._committed = list(shown[max(0, block.a - block.b) :])
                return

    def reset(self) -> None:
        self._previous = []
        self._last = []
        self._before_last = []
        self._committed = []
