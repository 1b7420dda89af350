"""Translation backends behind one small protocol (see `base.Translator`).

`--translator auto` (the default): an English target uses Whisper's own speech translation with the
loaded multilingual model; any other target uses Argos Translate (optional extra `livecap[argos]`).
"""

from __future__ import annotations

from livecap.asr.base import AsrBackend
from livecap.config import TranslateConfig
from livecap.errors import LivecapError
from livecap.translators.base import Translator
from livecap.translators.whisper import TARGET as WHISPER_TARGET
from livecap.translators.whisper import WhisperTranslator


def backend_name(options: TranslateConfig) -> str | None:
    """`whisper`, `argos`, or None when no translation is wanted."""
    if not options.translate_to:
        return None
    if options.translator != "auto":
        return options.translator
    return "whisper" if options.translate_to == WHISPER_TARGET else "argos"


def whisper_callers(options: TranslateConfig, workers: int) -> int:
    """Callers of the Whisper model beyond the ASR pool: the translation stage's threads (one per
    ASR worker) when Whisper translates."""
    return workers if backend_name(options) == "whisper" else 0


def open_translator(options: TranslateConfig, backend: AsrBackend) -> Translator | None:
    """The translator the options ask for, or None; fails
    here, before any audio, when it cannot work."""
    name = backend_name(options)
    if name is None:
        return None
    target = options.translate_to
    assert target is not None
    if name == "whisper":
        return WhisperTranslator(backend, target)
    from livecap.translators.argos import ArgosTranslator, list_installed_pairs

    translator = ArgosTranslator()  # raises the one-line install hint when the extra is missing
    pairs = list_installed_pairs()
    if not any(to_code == target for _, to_code in pairs):
        installed = ", ".join(f"{a}→{b}" for a, b in pairs) or "none"
        raise LivecapError(
            f"no Argos translation package translates into {target} (installed: {installed}); "
            f"install one with: livecap models install-translation FILE.argosmodel "
            f"(or --from LANG --to {target})"
        )
    return translator
