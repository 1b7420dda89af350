"""Guards against Whisper's known failures: text on silence or noise, and repetition loops.

The thresholds are OpenAI Whisper's defaults, which faster-whisper's temperature fallback uses too,
so a decode is judged the same way whether it went through `transcribe` or the batched window loop.
"""

from __future__ import annotations

import re
import zlib

NO_SPEECH_PROB = 0.6
LOG_PROB = -1.0
COMPRESSION_RATIO = 2.4
REPEAT_RUN = 4  # a word or phrase said this many times in a row is a loop


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
