"""Checking what clients ask for, once for WebSocket start messages and HTTP uploads alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faster_whisper.tokenizer import _LANGUAGE_CODES

from livecap.asr.base import DecodeOptions

MAX_PROMPT_CHARS = 2000
TASKS = ("transcribe", "translate")


class RequestError(Exception):
    """A request the server cannot serve; becomes {"error":
    {"message", "type", "code"}} with `status`."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}
        }


def _text(fields: Mapping[str, Any], *names: str) -> str | None:
    """The first of `names` given, as a non-empty string (or None)."""
    for name in names:
        value = fields.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise RequestError(f"{name} must be a string")
        if len(value) > MAX_PROMPT_CHARS:
            raise RequestError(f"{name} is limited to {MAX_PROMPT_CHARS} characters")
        return value
    return None


def decode_options(
    fields: Mapping[str, Any], *, multilingual: bool, model: str, task: str | None = None
) -> DecodeOptions:
    """Per-stream decoding from `language`, `task`, `prompt` (or `initial_prompt`) and `hotwords`;
    an English-only model refuses other languages and translation instead of producing nonsense."""
    language = _text(fields, "language")
    if language is not None:
        language = language.lower()
        if language not in _LANGUAGE_CODES:
            raise RequestError(
                f"unknown language {language!r}: use an ISO 639-1 code such as en, de, fr"
            )
        if not multilingual and language != "en":
            raise RequestError(f"model {model} is English-only: it cannot transcribe {language!r}")
    task = task or _text(fields, "task")
    if task is not None and task not in TASKS:
        raise RequestError('task must be "transcribe" or "translate"')
    if task == "translate" and not multilingual:
        raise RequestError(
            f"model {model} is English-only and cannot translate; start the server with --model "
            "base"
        )
    return DecodeOptions(
        language=language,
        task=task,
        initial_prompt=_text(fields, "prompt", "initial_prompt"),
        hotwords=_text(fields, "hotwords"),
    )
