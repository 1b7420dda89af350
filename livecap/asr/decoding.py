"""Decode options: what each kind of decode asks of Whisper, in one place.

A final gets the full-quality decode (beam, temperature fallback, timestamps) whether it goes alone
through `WhisperModel.transcribe` (`transcribe_options`) or through the batched window loop
(`window_options`: the same settings as faster-whisper's per-window `TranscriptionOptions`). An
interim is one greedy look (`INTERIM_*`). Per-request options (`DecodeOptions`) override the
configured ones; `requested_language` is None when the language is to be detected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from livecap.asr.base import AsrRequest
from livecap.asr.guards import COMPRESSION_RATIO, LOG_PROB, NO_SPEECH_PROB
from livecap.config import AsrConfig

if TYPE_CHECKING:
    from faster_whisper.transcribe import TranscriptionOptions

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's, for finals
# faster-whisper's defaults for attaching punctuation to words
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
WHISPER_WINDOW_S = 30.0
# Interims: the encoder sees the audio plus this much silence, and never less than the window
INTERIM_PAD_S = 2.0
INTERIM_WINDOW_S = 10.0
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


def transcribe_options(request: AsrRequest, config: AsrConfig, multilingual: bool) -> dict[str, Any]:
    """Keyword arguments of `WhisperModel.transcribe` for one request decoded alone."""
    final = request.final
    return {
        "language": requested_language(request, config, multilingual),
        "task": task_of(request, config),
        "beam_size": config.beam_size if final else 1,
        "best_of": config.beam_size if final else 1,
        "temperature": FALLBACK_TEMPERATURES if final else 0.0,
        "condition_on_previous_text": False,  # no context carried across windows: no loops across them
        "initial_prompt": initial_prompt_of(request, config),
        "hotwords": hotwords_of(request, config),
        "without_timestamps": not final,
        "word_timestamps": request.word_timestamps,
        "vad_filter": False,  # the VAD stage already cut speech
        "no_speech_threshold": NO_SPEECH_PROB,
        "log_prob_threshold": LOG_PROB,
        "compression_ratio_threshold": COMPRESSION_RATIO,
    }


def window_options(beam_size: int, suppress_tokens: tuple[int, ...]) -> TranscriptionOptions:
    """The options `transcribe_options` gives faster-whisper for a final, for its per-window steps."""
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
        temperatures=list(FALLBACK_TEMPERATURES),
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
