"""Subtitle cues from captions, within line limits a viewer can read.

A caption can be a whole 15 s utterance; shown as one cue it would be a wall of text. Its words are
wrapped into lines of at most `max_line_width` characters, and every `max_line_count` lines start a
new cue, timed from the word timestamps (from the characters' share of the caption's time when
there are none, as for a translation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from livecap.messages import Word


@dataclass(frozen=True)
class Layout:
    """Line limits of subtitle cues (defaults: the common broadcast 42 characters by 2 lines)."""

    max_line_width: int = 42
    max_line_count: int = 2


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: its time span and its lines."""
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Token:
    text: str
    start: float


def _chunks(word: str, width: int) -> list[str]:
    """A word longer than a line, cut into line-sized pieces (a limit is a limit)."""
    return [word[i : i + width] for i in range(0, len(word), width)] or [word]


def _timed_words(
    text: str, start: float, end: float, words: Sequence[Word]
) -> list[tuple[str, float, float]]:
    """The words of `text` with the time each is spoken. The text decides the words (Whisper's word
    list may split one, as "old" + "-sposed"); the word timestamps give the times when their letters
    spell the same text, and otherwise each word gets its share of [start, end] by characters."""
    pieces = text.split()
    letters = "".join(pieces)
    timed_letters = ["".join(w.word.split()) for w in words]
    if words and "".join(timed_letters) == letters:
        # the word each letter is in
        owner = [i for i, spelled in enumerate(timed_letters) for _ in spelled]
        out, position = [], 0
        for piece in pieces:
            first, last = words[owner[position]], words[owner[position + len(piece) - 1]]
            out.append((piece, first.start, last.end))
            position += len(piece)
        return out
    total = sum(len(p) + 1 for p in pieces) or 1
    out, offset = [], 0
    for piece in pieces:
        at = start + (end - start) * offset / total
        offset += len(piece) + 1
        out.append((piece, at, start + (end - start) * offset / total))
    return out


def _tokens(text: str, start: float, end: float, words: Sequence[Word], width: int) -> list[_Token]:
    """The pieces to lay out: words, with a word longer than a line cut in line-sized pieces that
    share its time span."""
    tokens = []
    for word, word_start, word_end in _timed_words(text, start, end, words):
        chunks = _chunks(word, width)
        step = max(word_end - word_start, 0.0) / len(chunks)
        tokens += [_Token(chunk, word_start + i * step) for i, chunk in enumerate(chunks)]
    return tokens


def split_caption(
    text: str, start: float, end: float, layout: Layout, words: Sequence[Word] = ()
) -> list[Cue]:
    """`text` spoken over [start, end] as cues that respect `layout`; cues follow each other
    without gaps, the first starting at `start` and the last ending at `end`."""
    width, count = layout.max_line_width, layout.max_line_count
    groups: list[list[list[_Token]]] = [[]]  # cues of lines of tokens
    line: list[_Token] = []
    for token in _tokens(text, start, end, words, width):
        if line and len(" ".join(t.text for t in line)) + 1 + len(token.text) > width:
            groups[-1].append(line)
            if len(groups[-1]) == count:
                groups.append([])
            line = []
        line.append(token)
    if line:
        groups[-1].append(line)
    groups = [g for g in groups if g]
    if not groups:
        return []
    bounds = [start]
    for group in groups[1:]:
        bounds.append(min(max(group[0][0].start, bounds[-1]), end))
    bounds.append(end)
    return [
        Cue(bounds[i], bounds[i + 1], tuple(" ".join(t.text for t in tokens) for tokens in group))
        for i, group in enumerate(groups)
    ]
