"""Deepgram's live API, `WS /v1/listen`, as a protocol over livecap's own live connection.

The stream is described by the query (`encoding`, `sample_rate`, `channels`, `language`,
`interim_results`, `endpointing`, `utterance_end_ms`, `vad_events`, `punctuate`, `smart_format`,
`keyterm`/`keywords`); the client sends binary audio and the text messages `KeepAlive`,
`Finalize` and `CloseStream`. livecap's interims become `Results` with `is_final: false` (the
committed words and the tail), its finals `Results` with `is_final: true` (`speech_final` on the
last caption of an utterance), its VAD decisions `SpeechStarted` and `UtteranceEnd`; the close
is preceded by `Metadata`. A `model` livecap knows (`base`, `small.en` ...) is used; any other
(`nova-3` ...) means the server's default model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from starlette.datastructures import QueryParams

from livecap.asr.base import DecodeOptions
from livecap.closecodes import INVALID, NORMAL, UNSUPPORTED
from livecap.config import Config
from livecap.server.live import (
    ANY_CONTAINER,
    CONTAINED,
    Closing,
    Start,
    StreamConnection,
    known_or_default,
    stream_vad,
)
from livecap.server.requests import RequestError, decode_options

ENCODINGS = {
    "linear16": "s16le",
    "mulaw": "mulaw",
    "alaw": "alaw",
    "opus": CONTAINED,
    "ogg-opus": CONTAINED,
}
MAX_CHANNELS = 8
_PUNCTUATION = re.compile(r"[^\w\s'-]")


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise Closing(INVALID, f"{name} must be true or false")
    return value.lower() == "true"


def _integer(query: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise Closing(INVALID, f"{name} must be a whole number from {low} to {high}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Listen:
    """The query of one `/v1/listen` connection, checked (its decoding once the model is known)."""

    start: Start
    fields: dict[str, str | None]  # language and hotwords, for decode_options
    interim: bool
    punctuate: bool
    vad_events: bool
    utterance_end: bool
    model: str


def parse_query(query: QueryParams, base: Config) -> Listen:
    """The connection's parameters, or `Closing` with the reason they cannot be served."""
    encoding = query.get("encoding")
    if encoding is not None and encoding not in ENCODINGS:
        raise Closing(
            UNSUPPORTED,
            f"encoding must be one of {', '.join(ENCODINGS)} (or absent for a container)",
        )
    fmt = ENCODINGS[encoding] if encoding else ANY_CONTAINER
    rate = _integer(query, "sample_rate", 8_000, 192_000)
    if rate is None and fmt not in (CONTAINED, ANY_CONTAINER):
        raise Closing(UNSUPPORTED, f"encoding={encoding} needs sample_rate")
    channels = _integer(query, "channels", 1, MAX_CHANNELS) or 1
    language = (query.get("language") or "").split("-")[0].lower()
    terms = query.getlist("keyterm") + [k.rsplit(":", 1)[0] for k in query.getlist("keywords")]
    fields = {
        "language": None if language in ("", "multi") else language,
        "hotwords": " ".join(terms),
    }
    interim = _flag(query, "interim_results", False)
    endpointing = query.get("endpointing")
    silence = (
        None
        if endpointing is None or endpointing.lower() == "false"
        else _integer(query, "endpointing", 0, 60_000)
    )
    config = stream_vad(base, silence_ms=silence, interim=interim)
    start = Start(rate or 16_000, fmt, DecodeOptions(), channels=channels, config=config)
    return Listen(
        start,
        fields,
        interim,
        _flag(query, "punctuate", False) or _flag(query, "smart_format", False),
        _flag(query, "vad_events", False),
        _integer(query, "utterance_end_ms", 0, 60_000) is not None,
        (query.get("model") or "")[:100],
    )


def plain(text: str) -> str:
    """Deepgram's unpunctuated form (punctuate and smart_format off): lower case, no punctuation."""
    return " ".join(_PUNCTUATION.sub("", text).lower().split())


def error_message(reason: str) -> dict[str, Any]:
    """Deepgram's error message."""
    return {"type": "Error", "variant": "livecap", "description": reason, "message": reason}


class DeepgramConnection(StreamConnection):
    """One `/v1/listen` connection: the live connection with Deepgram's messages."""

    vad_events = True  # speech starts (interim timing, SpeechStarted) and finalize answers
    error_message = staticmethod(error_message)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - StreamConnection's
        super().__init__(*args, **kwargs)
        self.request_id = str(uuid.uuid4())
        self.listen: Listen | None = None
        self._speech_start: dict[int, float] = {}  # utterance -> where its speech began
        self._finalized: set[int] = set()  # utterances cut by the client's Finalize
        self._sha = hashlib.sha256()

    async def begin(self) -> Start:
        self.listen = listen = parse_query(self.ws.query_params, self.hub.config)
        self.take_place_now()  # Deepgram's protocol has no place in line to tell
        self.lease = await self.lease_model(known_or_default(self.hub, listen.model), tell=False)
        try:
            decode = decode_options(
                listen.fields, multilingual=self.lease.multilingual, model=self.lease.name
            )
        except RequestError as error:
            raise Closing(INVALID, str(error)) from None
        return dataclasses.replace(listen.start, decode=decode)

    @property
    def _model_name(self) -> str:
        return self.lease.name if self.lease is not None else self.hub.model

    def ready(self, start: Start) -> list[dict[str, Any]]:
        return []  # Deepgram says nothing until there are results

    def on_message(self, message: dict[str, Any]) -> Closing | None:
        assert self.audio is not None and self.source is not None
        data = message.get("bytes")
        if data is not None:
            self._sha.update(data)
            self.audio.push(data)
            return None
        kind = _message_type(message.get("text") or "")
        if kind == "CloseStream":
            return Closing(NORMAL, "end of stream", graceful=True)
        if kind == "Finalize":
            self.source.control("finalize")
        elif kind != "KeepAlive":
            self.post_native(
                error_message(
                    f"unknown message type {kind!r}: send KeepAlive, Finalize or CloseStream"
                )
            )
        return None

    # -- records to Deepgram's messages ---------------------------------------------------------

    def wire(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        kind = record["type"]
        if kind == "interim":
            return self._interim(record)
        if kind == "final":
            return self._final(record)
        if kind == "vad":
            return self._vad(record)
        if kind == "error":
            return [error_message(record["message"])]
        return []  # stats: livecap's own

    def _vad(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.listen is not None
        utterance = record["utterance"]
        if record["kind"] == "speech_started":
            self._speech_start[utterance] = record["at"]
            if self.listen.vad_events:
                return [{"type": "SpeechStarted", "channel": [0], "timestamp": record["at"]}]
        elif record["kind"] == "finalized" and utterance is not None:
            self._finalized.add(utterance)
        elif record["kind"] == "speech_stopped" and not record["kept"]:
            self._speech_start.pop(utterance, None)
        return []

    def _interim(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        text = f"{record['committed']} {record['tail']}".strip()
        start = self._speech_start.get(record["utterance"], record["audio_end"])
        return [
            self._results(
                text, start, record["audio_end"], 0.0, [], is_final=False, speech_final=False
            )
        ]

    def _final(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.listen is not None
        words = record.get("words", [])
        last = record.get("last_in_utterance", True)
        utterance = record["utterance"]
        confidence = sum(w["probability"] for w in words) / len(words) if words else 0.0
        out = [
            self._results(
                record["text"].strip(),
                record["start"],
                record["end"],
                confidence,
                words,
                is_final=True,
                speech_final=last,
                from_finalize=utterance in self._finalized,
            )
        ]
        if last:
            self._speech_start.pop(utterance, None)
            self._finalized.discard(utterance)
            if self.listen.utterance_end:
                out.append(
                    {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": record["end"]}
                )
        return out

    def _results(
        self,
        text: str,
        start: float,
        end: float,
        confidence: float,
        words: list[dict[str, Any]],
        *,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool = False,
    ) -> dict[str, Any]:
        assert self.listen is not None
        punctuate = self.listen.punctuate
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "start": round(start, 3),
            "duration": round(max(0.0, end - start), 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": text if punctuate else plain(text),
                        "confidence": round(confidence, 4),
                        "words": [_word(w, punctuate) for w in words],
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_uuid": self.request_id,
                "model_info": {"name": self._model_name, "version": "livecap", "arch": "whisper"},
            },
        }

    def farewell(self, ending: Closing) -> list[dict[str, Any]]:
        assert self.listen is not None
        stats = self.stats_snapshot()
        return [
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self.request_id,
                "sha256": self._sha.hexdigest(),
                "created": datetime.now(timezone.utc).isoformat(),
                "duration": round(stats.audio_seconds, 3) if stats else 0.0,
                "channels": self.listen.start.channels,
                "models": [self.request_id],
                "model_info": {
                    self.request_id: {
                        "name": self._model_name,
                        "version": "livecap",
                        "arch": "whisper",
                    }
                },
            }
        ]


def _word(word: dict[str, Any], punctuate: bool) -> dict[str, Any]:
    out = {
        "word": plain(word["word"]),
        "start": word["start"],
        "end": word["end"],
        "confidence": word["probability"],
    }
    if punctuate:
        out["punctuated_word"] = word["word"].strip()
    return out


def _message_type(text: str) -> str:
    """The `type` of a client's text message, or `Closing` for one that is not a JSON object."""
    try:
        message = json.loads(text)
    except ValueError:
        raise Closing(
            INVALID, "text messages must be JSON: KeepAlive, Finalize or CloseStream"
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise Closing(INVALID, 'text messages must be JSON objects with a "type"')
    return message["type"]
