"""Word latency from a live run's output alone: when each spoken word was first shown.

A word is "spoken" at its end time in the reference word timings (offline faster-whisper word
timestamps on the same audio). It is "shown committed" at the stream clock (`emitted_at`) of the
first interim whose committed part holds it, or of its final if no interim committed it first; it is
"shown final" at its final's `emitted_at`. Hypothesis words are matched to reference words by a
sequence alignment of the normalised words; unmatched words have no latency (they are errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from livecap.bench.wer import normalize


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class ShownWord:
    word: str  # normalised
    committed_at: float  # stream seconds
    final_at: float
    start: float  # the word's own time in the final (stream seconds)
    end: float


def shown_words(events: list[dict[str, Any]]) -> list[ShownWord]:
    """The final words in order, each with when it was first shown committed and shown final."""
    committed: dict[int, list[tuple[float, list[str]]]] = {}
    for event in events:
        if event.get("type") == "interim" and event.get("emitted_at") is not None:
            words = normalize(event.get("committed", "")).split()
            committed.setdefault(event["utterance"], []).append((event["emitted_at"], words))
    out: list[ShownWord] = []
    by_utterance: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("type") == "final":
            by_utterance.setdefault(event["utterance"], []).append(event)
    for utterance, finals in by_utterance.items():
        words = [  # a word that normalises to several ("twenty-one") gives each its time
            (token, w["start"], w["end"], final["emitted_at"])
            for final in finals
            for w in final.get("words", [])
            for token in normalize(w["word"]).split()
        ]
        interims = sorted(committed.get(utterance, []))
        for index, (word, start, end, final_at) in enumerate(words):
            first = final_at
            for emitted_at, prefix in interims:  # the earliest interim that committed this word, here
                if index < len(prefix) and prefix[index] == word:
                    first = min(first, emitted_at)
                    break
            out.append(ShownWord(word, first, final_at, start, end))
    return out


def word_latencies(reference: list[TimedWord], shown: list[ShownWord]) -> dict[str, list[float]]:
    """Per matched word: seconds from spoken (reference end) to shown committed, and to final."""
    reference = [TimedWord(token, w.start, w.end) for w in reference for token in normalize(w.word).split()]
    ref_words = [w.word for w in reference]
    hyp_words = [w.word for w in shown]
    committed, final = [], []
    matcher = SequenceMatcher(a=ref_words, b=hyp_words, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            spoken = reference[block.a + k].end
            word = shown[block.b + k]
            committed.append(word.committed_at - spoken)
            final.append(word.final_at - spoken)
    return {"committed": committed, "final": final}
