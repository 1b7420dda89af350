"""Translator protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TranslationRequest:
    """Text to translate, with its audio when the backend can use it."""
    text: str
    source_language: str | None
    target_language: str
    samples: "np.ndarray | None"


class Translator(Protocol):
    """A translation backend."""
    name: str

    def translate(self, request: TranslationRequest) -> str: ...
