"""Whisper's own speech translation: the caption's audio, decoded again with `task="translate"`.

Uses the multilingual model the ASR already loaded, so it costs no extra model; Whisper translates
speech in any of its languages into English only. The translation stage's threads are more
concurrent callers of the model (`WhisperBackend(extra_workers=...)`, see `whisper_callers`).
"""

from __future__ import annotations

from livecap.asr.base import AsrBackend, AsrRequest, DecodeOptions
from livecap.errors import LivecapError
from livecap.translators.base import TranslationRequest

TARGET = "en"


class WhisperTranslator:
    """Speech (any language) to English text with the loaded multilingual Whisper model."""

    name = "whisper"

    def __init__(self, backend: AsrBackend, target: str) -> None:
        if target != TARGET:
            raise LivecapError(
                "Whisper translates speech into English only; use --translator argos for "
                f"--translate-to {target}"
            )
        if not backend.multilingual:
            raise LivecapError(
                f"model {backend.name} is English-only and cannot translate; use --model base"
            )
        self.backend = backend

    def translate(self, request: TranslationRequest) -> str:
        """The English for the request's audio; the text itself when it is already English."""
        if request.source_language == request.target_language:
            return request.text
        if request.samples is None or not len(request.samples):
            raise LivecapError("Whisper translation needs the caption's audio")
        options = DecodeOptions(language=request.source_language, task="translate")
        result = self.backend.transcribe(AsrRequest(request.samples, final=True, options=options))
        text = " ".join(segment.text for segment in result.segments).strip()
        if not text:
            raise LivecapError("Whisper gave no translation for this audio")
        return text
