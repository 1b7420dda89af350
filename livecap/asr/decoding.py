"""Decode options: what each kind of decode asks of Whisper, in one place.

A final gets the full-quality decode (beam, a deterministic fallback, timestamps) in the window loop
(`window_options`: faster-whisper's per-window `TranscriptionOptions`; `FALLBACK_DECODES`), alone or
batched. An interim is one greedy look (`INTERIM_*`), or faster-whisper's greedy `transcribe` while
its language is still to be detected (`transcribe_options`). Per-request options (`DecodeOptions`)
override the configured ones; `requested_language` is None when the language is to be detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livecap.asr.base import AsrRequest
from livecap.asr.guards import COMPRESSION_RATIO, LOG_PROB, NO_SPEECH_PROB
from livecap.config import AsrConfig

if TYPE_CHECKING:
    from faster_whisper.transcribe import TranscriptionOptions

# A final's decodes after a first one that failed the guards' checks, in order (`WindowLoop`): beam
# searches, not faster-whisper's sampling at rising temperatures, so that the same audio always
# gives the same caption (CTranslate2 samples from per-thread random generators that cannot be
# seeded per call); the last also bars repeated 3-grams, as the usual failure is a loop.
FALLBACK_DECODES: tuple[dict[str, Any], ...] = (
    {"beam_size": 5},
    {"beam_size": 5, "no_repeat_ngram_size": 3},
)
# faster-whisper's defaults for attaching punctuation to words
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
WHISPER_WINDOW_S = 30.0


@dataclass(frozen=True)
class EncoderInput:
    """How long the encoder's input is for a window's audio: the audio plus `pad_s` of silence,
    never less than `min_s` nor more than Whisper's 30 s. The encoder's cost grows faster than its
    input (self-attention), and a live final or an interim holds a few seconds of speech, not 30.
    Longer inputs are rounded up to whole steps, so that windows of several streams share a shape
    (a batch) while each one's input still depends on its own audio alone."""

    min_s: float
    pad_s: float
    step_s: float = 5.0

    def length(self, audio: int, per_second: int) -> int:
        """The input for `audio`, in its units (`per_second` to a second: samples or frames)."""
        step = int(self.step_s * per_second)
        padded = -(-(audio + int(self.pad_s * per_second)) // step) * step
        return min(max(padded, int(self.min_s * per_second)), int(WHISPER_WINDOW_S * per_second))


# A final keeps 8 s of silence after its speech at least: with only 2 s, tiny.en loops or adds a
# sentence on some windows ("And so my fellow Americans" thrice); an interim, replaced by its
# final, takes the cheaper input (README, Short encoder inputs).
FINAL_INPUT = EncoderInput(min_s=20.0, pad_s=8.0)
INTERIM_INPUT = EncoderInput(min_s=10.0, pad_s=2.0)
INTERIM_TOKENS_PER_S = 8  # the most tokens an interim may decode per second of audio


def requested_language(request: AsrRequest, config: AsrConfig, multilingual: bool) -> str | None:
    """The language a request asks for, or the configured one; None: to be detected."""
    return (request.options.language or config.language) if multilingual else "en"


def task_of(request: AsrRequest, config: AsrConfig) -> str:
    """Transcribe or translate, as the request asks or as configured."""
    return request.options.task or config.task


def hotwords_of(request: AsrRequest, config: AsrConfig) -> str | None:
    """The words a request favours, or the configured ones."""
    return request.options.hotwords or config.hotwords


def initial_prompt_of(request: AsrRequest, config: AsrConfig) -> str | None:
    """The text that primes a request's first window, or the configured one."""
    return request.options.initial_prompt or config.initial_prompt


def transcribe_options(
    request: AsrRequest, config: AsrConfig, multilingual: bool
) -> dict[str, Any]:
    """Keyword arguments of `WhisperModel.transcribe` for an interim whose language is unknown:
    greedy, at temperature 0 only (deterministic), without timestamps."""
    return {
        "language": requested_language(request, config, multilingual),
        "task": task_of(request, config),
        "beam_size": 1,
        "best_of": 1,
        "temperature": 0.0,
        # no context carried across windows: no loops across them
        "condition_on_previous_text": False,
        "initial_prompt": initial_prompt_of(request, config),
        "hotwords": hotwords_of(request, config),
        "without_timestamps": True,
        "word_timestamps": request.word_timestamps,
        "vad_filter": False,  # the VAD stage already cut speech
        "no_speech_threshold": NO_SPEECH_PROB,
        "log_prob_threshold": LOG_PROB,
        "compression_ratio_threshold": COMPRESSION_RATIO,
    }


def window_options(beam_size: int, suppress_tokens: tuple[int, ...]) -> TranscriptionOptions:
    """faster-whisper's per-window options for a final (its steps read them); the fallback's
    decodes are `FALLBACK_DECODES`, so only the first temperature, 0, is ever used."""
    from faster_whisper.transcribe import TranscriptionOptions

    return TranscriptionOptions(
        beam_size=beam_size,
        best_of=beam_size,
        patience=1,
        length_penalty=1,
        repetition_penalty=1,
        no_repeat_ngram_size=0,
        log_prob_threshold=LOG_PROB,
        no_speech_threshold=NO_SPEECH_PROB,
        compression_ratio_threshold=COMPRESSION_RATIO,
        condition_on_previous_text=False,
        prompt_reset_on_temperature=0.5,
        temperatures=[0.0],
        initial_prompt=None,
        prefix=None,
        suppress_blank=True,
        suppress_tokens=list(suppress_tokens),
        without_timestamps=False,
        max_initial_timestamp=1.0,
        word_timestamps=False,
        prepend_punctuations=PREPEND_PUNCTUATIONS,
        append_punctuations=APPEND_PUNCTUATIONS,
        multilingual=False,
        max_new_tokens=None,
        clip_timestamps="0",
        hallucination_silence_threshold=None,
        hotwords=None,
    )
