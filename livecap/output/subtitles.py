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


def _tokens(text: str, start: float, end: float, words: Sequence[Word], width: int) -> list[_Token]:
    """The words to lay out, each with the time it is spoken: from `words` when there are any,
    otherwise spread over [start, end] by their position in the text. A word cut into pieces
    shares its time span between them."""
    timed = [(w.word.strip(), w.start, w.end) for w in words if w.word.strip()]
    if not timed:
        pieces = text.split()
        total = sum(len(p) + 1 for p in pieces) or 1
        offset = 0
        for piece in pieces:
            at = start + (end - start) * offset / total
            offset += len(piece) + 1
            timed.append((piece, at, start + (end - start) * offset / total))
    tokens = []
    for word, word_start, word_end in timed:
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
