"""Speaker turns and captions: who spoke when, and each caption's words labelled and split so that
no caption spans two speakers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from livecap.messages import Caption, Word

# a shorter run of words with another speaker inside a caption is the caption's speaker
MIN_RUN_S = 0.4


@dataclass(frozen=True)
class Turn:
    """One speaker talking over [start, end] (stream seconds)."""

    start: float
    end: float
    speaker: str


def turns_from_windows(
    windows: Sequence[tuple[float, float]], speakers: Sequence[str]
) -> list[Turn]:
    """Turns from labelled, time-ordered windows: where two overlapping windows disagree, the turn
    changes halfway through their overlap; same-speaker neighbours merge."""
    turns: list[Turn] = []
    for (start, end), speaker in zip(windows, speakers):
        if turns and start < turns[-1].end:
            last = turns[-1]
            if last.speaker == speaker:
                turns[-1] = Turn(last.start, max(last.end, end), speaker)
                continue
            middle = (start + last.end) / 2
            turns[-1] = Turn(last.start, middle, last.speaker)
            start = middle
        if turns and turns[-1].speaker == speaker and start - turns[-1].end < 0.5:
            turns[-1] = Turn(turns[-1].start, end, speaker)
        else:
            turns.append(Turn(start, end, speaker))
    return [t for t in turns if t.end > t.start]


def speaker_at(turns: Sequence[Turn], start: float, end: float) -> str | None:
    """The speaker talking most over [start, end]; the nearest turn's when none overlaps."""
    if not turns:
        return None
    overlap = {t.speaker: 0.0 for t in turns}
    for t in turns:
        overlap[t.speaker] += max(0.0, min(end, t.end) - max(start, t.start))
    best = max(overlap, key=overlap.__getitem__)
    if overlap[best] > 0:
        return best
    middle = (start + end) / 2
    return min(turns, key=lambda t: max(t.start - middle, middle - t.end)).speaker


def _runs(words: Sequence[Word]) -> list[list[Word]]:
    """Words grouped by speaker; a run shorter than `MIN_RUN_S` joins the run before it."""
    runs: list[list[Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    merged: list[list[Word]] = []
    for run in runs:
        short = run[-1].end - run[0].start < MIN_RUN_S
        if merged and (short or merged[-1][-1].speaker == run[0].speaker):
            merged[-1] += [dataclasses.replace(w, speaker=merged[-1][0].speaker) for w in run]
        else:
            merged.append(run)
    if len(merged) > 1 and merged[0][-1].end - merged[0][0].start < MIN_RUN_S:  # a short first run
        merged[1] = [
            dataclasses.replace(w, speaker=merged[1][0].speaker) for w in merged[0]
        ] + merged[1]
        merged.pop(0)
    return merged


def _texts(text: str, runs: list[list[Word]]) -> list[str]:
    """The caption's text cut where its runs of words part: the text's own words, so spacing and
    punctuation stay (Whisper's word list may split one, as "old" + "-sposed"); when its letters do
    not spell the words', each run's words joined by spaces."""
    pieces = text.split()
    spelled = ["".join(w.word.split()) for run in runs for w in run]
    if "".join(spelled) != "".join(pieces):
        return [" ".join(w.word.strip() for w in run) for run in runs]
    run_of_letter = [i for i, run in enumerate(runs) for w in run for _ in "".join(w.word.split())]
    out: list[list[str]] = [[] for _ in runs]
    position = 0
    for piece in pieces:
        out[run_of_letter[position]].append(piece)
        position += len(piece)
    return [" ".join(words) for words in out]


def label_caption(caption: Caption, turns: Sequence[Turn]) -> list[Caption]:
    """`caption` with its words' speakers, split where the speaker changes (at word times). A
    translated caption is not split (its translation cannot be): it gets its main speaker."""
    if not caption.words or caption.translation is not None:
        return [
            dataclasses.replace(
                caption,
                speaker=speaker_at(turns, caption.start, caption.end),
                words=tuple(
                    dataclasses.replace(w, speaker=speaker_at(turns, w.start, w.end))
                    for w in caption.words
                ),
            )
        ]
    words = [
        dataclasses.replace(w, speaker=speaker_at(turns, w.start, w.end)) for w in caption.words
    ]
    runs = _runs(words)
    if len(runs) == 1:
        return [dataclasses.replace(caption, speaker=runs[0][0].speaker, words=tuple(runs[0]))]
    pieces = []
    for i, (run, text) in enumerate(zip(runs, _texts(caption.text, runs))):
        start = caption.start if i == 0 else run[0].start
        end = caption.end if i == len(runs) - 1 else run[-1].end
        pieces.append(
            dataclasses.replace(
                caption, start=start, end=end, text=text, words=tuple(run), speaker=run[0].speaker
            )
        )
    return pieces


def label_captions(captions: Sequence[Caption], turns: Sequence[Turn]) -> list[Caption]:
    """Every caption labelled (and split), numbered again in order."""
    out = [piece for caption in captions for piece in label_caption(caption, turns)]
    return [dataclasses.replace(c, seq=i) for i, c in enumerate(out)]
