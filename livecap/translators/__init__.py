"""Translation backends behind one small protocol (see `base.Translator`)."""

from __future__ import annotations

from livecap.asr import AsrBackend
from livecap.config import TranslateConfig
from livecap.translators.base import Translator


def open_translator(options: TranslateConfig, backend: AsrBackend) -> Translator | None:
    """The translator the options ask for, or None when no translation is wanted."""
    if not options.translate_to:
        return None
    raise NotImplementedError("translation lands with issue 4")
