"""Word latency from a live run's output alone: when each spoken word was first shown.

A word is "spoken" at its end time in the reference word timings (offline faster-whisper word
timestamps on the same audio). It is "shown committed" at the stream clock (`emitted_at`) of the
first interim whose committed part holds it (aligned with the final's words of the same utterance),
or of its final if no interim committed it first (a word carried over a cut in speech counts from
when it was first committed before the cut, see `_commit_times`); it is "shown final" at its
final's `emitted_at`. Hypothesis words are matched to reference words of the same text near the
same time (see `word_latencies`); unmatched words have no latency (they are errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from livecap.bench.wer import normalize

MATCH_WINDOW_S = 1.5  # a shown word and its reference word end at most this far apart


@dataclass(frozen=True)
class TimedWord:
    """A reference word with its spoken time (stream seconds)."""
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class ShownWord:
    """A word as livecap showed it: when it was first committed and when final."""
    word: str  # normalised
    committed_at: float  # stream seconds
    final_at: float
    start: float  # the word's own time in the final (stream seconds)
    end: float


def faster_whisper_text(
    model: Any, path: Path, *, word_timestamps: bool, **options: Any
) -> tuple[str, list[TimedWord]]:
    """Plain faster-whisper on a file (a `WhisperModel`, its own options): its text and, when
    asked, its word times — the reference the word latency is measured against."""
    segments = list(model.transcribe(str(path), word_timestamps=word_timestamps, **options)[0])
    words = [TimedWord(w.word, w.start, w.end) for segment in segments for w in segment.words or ()]
    return " ".join(segment.text.strip() for segment in segments), words


Commits = list[tuple[float, list[str]]]  # (emitted at, committed words) of one utterance's interims


def shown_words(events: list[dict[str, Any]]) -> list[ShownWord]:
    """The final words in order, each with when it was first shown committed and shown final."""
    committed: dict[int, Commits] = {}
    by_utterance: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("type") == "interim" and event.get("emitted_at") is not None:
            words = normalize(event.get("committed", "")).split()
            committed.setdefault(event["utterance"], []).append((event["emitted_at"], words))
        elif event.get("type") == "final":
            by_utterance.setdefault(event["utterance"], []).append(event)
    for commits in committed.values():
        commits.sort(key=lambda commit: commit[0])
    first_final = {  # when each utterance's first final cleared the interim line
        utterance: finals[0]["emitted_at"]
        for utterance, finals in by_utterance.items()
        if finals[0].get("emitted_at") is not None
    }
    out: list[ShownWord] = []
    for utterance, finals in by_utterance.items():
        words = [  # a word that normalises to several ("twenty-one") gives each its time
            (token, w["start"], w["end"], final["emitted_at"])
            for final in finals
            for w in final.get("words", [])
            for token in normalize(w["word"]).split()
        ]
        first = [final_at for _, _, _, final_at in words]
        tokens = [word for word, _, _, _ in words]
        for times, prefix in _commit_times(utterance, committed, first_final):
            # the interim's committed words that the final kept (aligned within this utterance)
            for block in SequenceMatcher(a=prefix, b=tokens, autojunk=False).get_matching_blocks():
                for k in range(block.size):
                    first[block.b + k] = min(first[block.b + k], times[block.a + k])
        out += [
            ShownWord(word, shown, final_at, start, end)
            for (word, start, end, final_at), shown in zip(words, first)
        ]
    return out


def _commit_times(
    utterance: int, committed: dict[int, Commits], first_final: dict[int, float]
) -> list[tuple[list[float], list[str]]]:
    """Each interim of an utterance: when each of its committed words was first shown. The first
    interim of an utterance cut from the previous one while speech went on begins with the words
    that were committed past the cut (`LocalAgreement.carry`); when it came before the previous
    utterance's final cleared the interim line, those words have been on screen since the previous
    utterance's interims first committed them."""
    commits = committed.get(utterance, [])
    out = [([at] * len(words), words) for at, words in commits]
    before = committed.get(utterance - 1)
    if not out or not before or commits[0][0] >= first_final.get(utterance - 1, float("inf")):
        return out
    first_shown = [  # committed words only grow: word p was first shown by the first to hold it
        next(at for at, words in before if len(words) > p) for p in range(len(before[-1][1]))
    ]
    times, words = out[0]
    blocks = SequenceMatcher(a=before[-1][1], b=words, autojunk=False).get_matching_blocks()
    if blocks and blocks[0].b == 0:
        for k in range(blocks[0].size):
            times[k] = min(times[k], first_shown[blocks[0].a + k])
    return out


def caption_lags(events: list[dict[str, Any]]) -> list[float]:
    """Per final caption: seconds from the end of its last word to when it was shown (stream
    clock): how long a caption of a long utterance waits for the rest of it."""
    return [
        event["emitted_at"] - event["words"][-1]["end"]
        for event in events
        if event.get("type") == "final"
        and event.get("words")
        and event.get("emitted_at") is not None
    ]


def word_latencies(
    reference: list[TimedWord], shown: list[ShownWord], window_s: float = MATCH_WINDOW_S
) -> dict[str, list[float]]:
    """Per matched word: seconds from spoken (reference end) to shown committed, and to final.

    A shown word matches the nearest unused reference word with the same normalised text whose end
    lies within `window_s` of the shown word's own end time. Matching by time, not by a sequence
    alignment, keeps a phrase said twice (a long mix repeats) from matching the wrong time."""
    by_word: dict[str, list[tuple[float, int]]] = {}
    for index, w in enumerate(reference):
        for token in normalize(w.word).split():
            by_word.setdefault(token, []).append((w.end, index))
    used: set[int] = set()
    committed, final = [], []
    for word in shown:
        candidates = [
            (abs(end - word.end), end, index)
            for end, index in by_word.get(word.word, ())
            if index not in used and abs(end - word.end) <= window_s
        ]
        if not candidates:
            continue  # an error (or a word the reference lacks): no latency
        _, spoken, index = min(candidates)
        used.add(index)
        committed.append(word.committed_at - spoken)
        final.append(word.final_at - spoken)
    return {"committed": committed, "final": final}
