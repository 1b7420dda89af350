"""What every ASR backend takes and gives: a request with its own decoding options, a result with
segments (and word timings when asked), and the small protocol a backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class DecodeOptions:
    """Per-stream decoding options; None means the engine's configured default."""

    language: str | None = None
    task: str | None = None
    initial_prompt: str | None = None
    hotwords: str | None = None


@dataclass(frozen=True)
class AsrRequest:
    """One piece of audio to transcribe. `final` asks for the full-quality decode (beam, fallback,
    timestamps); an interim is a quick greedy look at audio still being spoken. A `live` final is
    encoded on an input cut to its audio (`decoding.FINAL_INPUT`): it must come quickly; a file's
    windows keep Whisper's 30 s."""

    samples: np.ndarray
    final: bool
    options: DecodeOptions = DecodeOptions()
    word_timestamps: bool = False
    live: bool = False


@dataclass(frozen=True)
class AsrWord:
    """A word; times are seconds within the audio that was transcribed."""

    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class AsrSegment:
    """A recognised segment; times are seconds within the audio that was transcribed."""

    start: float
    end: float
    text: str
    words: tuple[AsrWord, ...] = ()


@dataclass(frozen=True)
class AsrResult:
    """One decode's segments and the language it was decoded in."""
    segments: tuple[AsrSegment, ...]
    language: str | None
    language_probability: float


class AsrBackend(Protocol):
    """Speech to text. Must be safe to call from several threads at once."""

    name: str
    device: str
    compute_type: str
    multilingual: bool

    def transcribe(self, request: AsrRequest) -> AsrResult: ...


@runtime_checkable
class BatchAsrBackend(AsrBackend, Protocol):
    """A backend that can run several requests in one call (one forward pass on many streams'
    audio). Each request keeps its own options and gets its own result, or its own exception."""

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult | Exception]: ...
