"""Guards against Whisper's known failures: text on silence or noise, repetition loops, and text
written over the pause after the speech (`drop_invented`).

The thresholds are OpenAI Whisper's defaults, which faster-whisper's temperature fallback uses too,
so a decode is judged the same way whether it went through `transcribe` or the batched window loop.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Callable, Sequence

from livecap.asr.base import AsrSegment

NO_SPEECH_PROB = 0.6
LOG_PROB = -1.0
COMPRESSION_RATIO = 2.4
REPEAT_RUN = 4  # a word or phrase said this many times in a row is a loop
# Whisper may time a real word this far past the VAD's end of speech; a word starting later lies in
# the pause after the speech (the pad a final keeps, and the silence decoded after it)
PAD_TOLERANCE_S = 0.25


def compression_ratio(text: str) -> float:
    """Bytes per zlib-compressed byte: high for repetition loops."""
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def collapse_repeats(text: str) -> str:
    """Cut a run of the same word or phrase (1-4 words)
    repeated REPEAT_RUN or more times down to one."""
    words = text.split()
    for size in range(1, 5):
        out: list[str] = []
        i = 0
        while i < len(words):
            phrase = words[i : i + size]
            runs = 1
            while words[i + runs * size : i + (runs + 1) * size] == phrase:
                runs += 1
            if runs >= REPEAT_RUN and len(phrase) == size:
                out.extend(phrase)
                i += runs * size
            else:
                out.append(words[i])
                i += 1
        words = out
    return " ".join(words)


def is_hallucination(text: str, no_speech_prob: float, avg_logprob: float) -> bool:
    """Whisper's silence/garbage signature: likely no speech
    and a low-confidence decode, or a loop."""
    if not re.search(r"\w", text):
        return True
    if no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOG_PROB:
        return True
    return compression_ratio(text) > COMPRESSION_RATIO and len(text) > 40


def is_silent_window(no_speech_prob: float, avg_logprob: float) -> bool:
    """faster-whisper's no-speech skip: a window said to hold
    no speech and not decoded confidently."""
    return no_speech_prob > NO_SPEECH_PROB and not avg_logprob > LOG_PROB


def needs_fallback(no_speech_prob: float, avg_logprob: float, text: str) -> bool:
    """faster-whisper's test after a temperature-0 decode:
    too repetitive or too unsure, unless silent."""
    if no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOG_PROB:
        return False
    return compression_ratio(text) > COMPRESSION_RATIO or avg_logprob < LOG_PROB


def drop_invented(
    segments: Sequence[AsrSegment], past_speech: Callable[[float], float]
) -> tuple[AsrSegment, ...]:
    """What Whisper wrote over the pause after the speech, dropped ("Thank you for watching"):
    a segment most of whose words start in that pause (timed without words: that starts there)
    goes whole, since Whisper starts such a segment where the speech's last one ended and crowds
    its words at the end of the audio; a kept segment loses the words that end it in the pause.
    `past_speech(t)`: how far a time inside the decoded audio lies after the end of speech."""

    def in_pause(t: float) -> bool:
        return past_speech(t) > PAD_TOLERANCE_S

    kept = []
    for segment in segments:
        late = sum(in_pause(w.start) for w in segment.words)
        if late * 2 > len(segment.words) or (not segment.words and in_pause(segment.start)):
            continue
        cut = len(segment.words)
        while cut and in_pause(segment.words[cut - 1].start):
            cut -= 1
        kept.append(_cut_words(segment, cut) if cut < len(segment.words) else segment)
    return tuple(kept)


def _cut_words(segment: AsrSegment, cut: int) -> AsrSegment:
    """The segment with only its first `cut` words, its text cut where they end; unchanged when its
    text does not end with the words cut (a collapsed loop): nothing is guessed."""
    text = segment.text
    for word in reversed(segment.words[cut:]):
        text = text.rstrip()
        if not text.endswith(word.word):
            return segment
        text = text[: len(text) - len(word.word)]
    words = segment.words[:cut]
    end = max(words[-1].end, segment.start)
    return dataclasses.replace(segment, text=text.rstrip(), end=end, words=words)
