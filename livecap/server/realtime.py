"""OpenAI's Realtime API in transcription mode, `WS /v1/realtime?intent=transcription`, as a
protocol over livecap's own live connection.

Both shapes are spoken: the GA one (`session.update` with `session.type = "transcription"` and
`audio.input.format` / `.transcription` / `.turn_detection`) and the beta one (a client sending
`OpenAI-Beta: realtime=v1`, `transcription_session.update` with `input_audio_format`,
`input_audio_transcription`, `turn_detection`). The client appends base64 audio
(`input_audio_buffer.append`), may `commit` (end the turn now) or `clear` (drop it). The server
answers with `input_audio_buffer.speech_started` / `speech_stopped` / `committed` from livecap's
VAD, `conversation.item.input_audio_transcription.delta` with each interim's newly committed words
(deltas never retract) and `.completed` with the final transcript of the turn, and `error`.

The session is configured until the first audio arrives: the stream is made then, with that
format, model and VAD; a later change is refused with an `error` (the stream goes on).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import json
import uuid
from typing import Any

from livecap.closecodes import INVALID, UNSUPPORTED
from livecap.server.live import (
    MAX_RATE,
    MIN_RATE,
    Closing,
    Start,
    StreamConnection,
    known_or_default,
    stream_vad,
)
from livecap.server.requests import RequestError, decode_options

GA_FORMATS = {"audio/pcm": "s16le", "audio/pcmu": "mulaw", "audio/pcma": "alaw"}
BETA_FORMATS = {"pcm16": "s16le", "g711_ulaw": "mulaw", "g711_alaw": "alaw"}
G711_RATE = 8_000
TURN_TYPES = ("server_vad", "semantic_vad")  # semantic_vad is served by the same VAD


class EventError(Exception):
    """A client event the session cannot take: becomes an `error` event; the connection goes on."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


@dataclasses.dataclass(frozen=True)
class Session:
    """A transcription session's settings, as either shape describes them."""

    fmt: str = "s16le"
    rate: int = 24_000
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None
    turn: dict[str, Any] | None = dataclasses.field(
        default_factory=lambda: {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        }
    )

    def describe(self, beta: bool, session_id: str) -> dict[str, Any]:
        transcription = {"model": self.model, "language": self.language, "prompt": self.prompt}
        if beta:
            fmt = {v: k for k, v in BETA_FORMATS.items()}[self.fmt]
            return {
                "id": session_id,
                "object": "realtime.transcription_session",
                "input_audio_format": fmt,
                "input_audio_transcription": transcription,
                "turn_detection": self.turn,
                "input_audio_noise_reduction": None,
                "include": None,
            }
        fmt = {"type": {v: k for k, v in GA_FORMATS.items()}[self.fmt]}
        if self.fmt == "s16le":
            fmt["rate"] = self.rate
        return {
            "type": "transcription",
            "id": session_id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": fmt,
                    "transcription": transcription,
                    "turn_detection": self.turn,
                    "noise_reduction": None,
                }
            },
            "include": None,
        }

    def updated(self, session: object, beta: bool) -> Session:
        """These settings changed by a `session.update` (GA)
        or `transcription_session.update` (beta)."""
        if not isinstance(session, dict):
            raise EventError("session must be an object", param="session")
        if beta:
            audio = {
                "format": session.get("input_audio_format"),
                "transcription": session.get("input_audio_transcription"),
                "turn_detection": session.get("turn_detection", ...),
            }
        else:
            if session.get("type", "transcription") != "transcription":
                raise EventError(
                    'this server only transcribes: session.type must be "transcription"',
                    param="session.type",
                )
            audio = (session.get("audio") or {}).get("input") or {}
            if not isinstance(audio, dict):
                raise EventError(
                    "session.audio.input must be an object", param="session.audio.input"
                )
            audio = {
                "format": audio.get("format"),
                "transcription": audio.get("transcription"),
                "turn_detection": audio.get("turn_detection", ...),
            }
        changed = self._format(audio["format"], beta) if audio["format"] is not None else self
        changed = (
            changed._transcription(audio["transcription"])
            if audio["transcription"] is not None
            else changed
        )
        if audio["turn_detection"] is not ...:
            changed = dataclasses.replace(changed, turn=_turn(audio["turn_detection"]))
        return changed

    def _format(self, given: object, beta: bool) -> Session:
        if beta:
            if given not in BETA_FORMATS:
                raise EventError(
                    f"input_audio_format must be one of {', '.join(BETA_FORMATS)}",
                    param="input_audio_format",
                )
            fmt = BETA_FORMATS[given]  # type: ignore[index]
            return dataclasses.replace(self, fmt=fmt, rate=24_000 if fmt == "s16le" else G711_RATE)
        kind = given.get("type") if isinstance(given, dict) else None
        if kind not in GA_FORMATS:
            raise EventError(
                f"audio.input.format.type must be one of {', '.join(GA_FORMATS)}",
                param="audio.input.format",
            )
        pcm = kind == "audio/pcm"
        rate = given.get("rate", 24_000) if pcm else G711_RATE  # type: ignore[union-attr]
        if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
            raise EventError(
                f"the rate must be an integer from {MIN_RATE} to {MAX_RATE}",
                param="audio.input.format.rate",
            )
        return dataclasses.replace(self, fmt=GA_FORMATS[kind], rate=rate)

    def _transcription(self, given: object) -> Session:
        if not isinstance(given, dict):
            raise EventError("the transcription settings must be an object", param="transcription")
        strings = {}
        for name in ("model", "language", "prompt"):
            value = given.get(name)
            if value is not None and not isinstance(value, str):
                raise EventError(
                    f"transcription.{name} must be a string", param=f"transcription.{name}"
                )
            strings[name] = value
        return dataclasses.replace(
            self,
            model=strings["model"] or self.model,
            language=strings["language"],
            prompt=strings["prompt"],
        )


def _turn(given: object) -> dict[str, Any] | None:
    """Turn detection: None (the client commits; livecap's
    VAD still cuts at pauses) or server_vad."""
    if given is None:
        return None
    if not isinstance(given, dict) or given.get("type") not in TURN_TYPES:
        raise EventError(
            f"turn_detection.type must be one of {', '.join(TURN_TYPES)} (or null)",
            param="turn_detection",
        )
    turn = {
        "type": given["type"],
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
    }
    for name, low, high in (
        ("threshold", 0.05, 0.95),
        ("prefix_padding_ms", 0, 2000),
        ("silence_duration_ms", 0, 10_000),
    ):
        value = given.get(name, turn[name])
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            raise EventError(
                f"turn_detection.{name} must be a number from {low} to {high}",
                param=f"turn_detection.{name}",
            )
        turn[name] = value
    return turn


def error_event(
    message: str,
    code: str | None = None,
    param: str | None = None,
    kind: str = "invalid_request_error",
    event_id: str = "event_error",
) -> dict[str, Any]:
    """OpenAI's error event."""
    return {
        "type": "error",
        "event_id": event_id,
        "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": None},
    }


def _message(text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except ValueError:
        raise EventError("the event is not JSON", code="invalid_json") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise EventError('an event must be a JSON object with a "type"', code="invalid_event")
    return event


def _client_event(message: dict[str, Any]) -> dict[str, Any]:
    """A WebSocket message as a client event: audio comes inside JSON events, never binary."""
    if message.get("bytes") is not None:
        raise EventError("send audio as input_audio_buffer.append events, not binary messages")
    return _message(message.get("text") or "")


def _audio(event: dict[str, Any]) -> bytes:
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise EventError("input_audio_buffer.append needs `audio`, base64", param="audio")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise EventError("`audio` is not valid base64", param="audio") from None


class RealtimeConnection(StreamConnection):
    """One `/v1/realtime?intent=transcription` connection:
    the live connection with OpenAI's events."""

    # speech_started / speech_stopped / committed, and answers to commit and clear
    vad_events = True
    error_message = staticmethod(error_event)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - StreamConnection's
        super().__init__(*args, **kwargs)
        self.max_text = self.settings.max_frame_bytes * 4 // 3 + 4096  # base64 audio in JSON
        self.beta = "realtime=v1" in self.ws.headers.get("openai-beta", "")
        self.session = Session()
        self.session_id = f"sess_{uuid.uuid4().hex[:20]}"
        self._ids = itertools.count(1)
        self._first_audio: bytes | None = None
        self._items: dict[int, str] = {}  # utterance -> item id
        self._sent: dict[int, str] = {}  # utterance -> the committed text sent as deltas
        self._texts: dict[int, list[str]] = {}  # utterance -> its final captions so far
        self._previous: str | None = None

    # -- configuring, until the first audio -----------------------------------------------------

    async def begin(self) -> Start:
        if self.ws.query_params.get("intent") != "transcription":
            raise Closing(
                UNSUPPORTED,
                "only ?intent=transcription is served: livecap transcribes, it does not converse",
            )
        self.take_place_now()  # OpenAI's protocol has no place in line to tell
        await self.ws.send_json(
            self._event(
                "transcription_session.created" if self.beta else "session.created",
                session=self.session.describe(self.beta, self.session_id),
            )
        )
        while self._first_audio is None:
            message = await self._receive(float("inf"))  # only the idle timeout bounds the wait
            self._check_size(message)
            for answer in self._configure(message):
                await self.ws.send_json(answer)
        self.lease = await self.lease_model(
            known_or_default(self.hub, self.session.model), tell=False
        )
        fields = {"language": self.session.language, "prompt": self.session.prompt}
        try:
            decode = decode_options(
                fields, multilingual=self.lease.multilingual, model=self.lease.name
            )
        except RequestError as error:
            raise Closing(INVALID, str(error)) from None
        turn = self.session.turn or {}
        config = stream_vad(
            self.hub.config,
            silence_ms=turn.get("silence_duration_ms"),
            threshold=turn.get("threshold"),
            pad_ms=turn.get("prefix_padding_ms"),
            interim=True,
        )
        return Start(self.session.rate, self.session.fmt, decode, config=config)

    def _configure(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """A client event before any audio: the answers to send."""
        try:
            event = _client_event(message)
            kind = event["type"]
            if kind in ("session.update", "transcription_session.update"):
                self.session = self.session.updated(
                    event.get("session"), beta=kind.startswith("transcription")
                )
                updated = (
                    "transcription_session.updated"
                    if kind.startswith("transcription")
                    else "session.updated"
                )
                return [
                    self._event(updated, session=self.session.describe(self.beta, self.session_id))
                ]
            if kind == "input_audio_buffer.append":
                self._first_audio = _audio(event)
                return []
            if kind == "input_audio_buffer.commit":
                raise EventError(
                    "the buffer is empty: append audio first",
                    code="input_audio_buffer_commit_empty",
                )
            if kind == "input_audio_buffer.clear":
                return [self._event("input_audio_buffer.cleared")]
            raise EventError(
                f"unsupported event {kind!r} in a transcription session", code="unknown_event"
            )
        except EventError as refused:
            return [self._error(refused)]

    def ready(self, start: Start) -> list[dict[str, Any]]:
        return []  # the session was described when it was created and updated

    def flowing(self) -> None:
        assert self.audio is not None and self._first_audio is not None
        try:
            self.audio.push(self._first_audio)
        except Closing as closing:  # audio that cannot be in the session's format
            self.end_with(closing)

    # -- once audio flows -----------------------------------------------------------------------

    def on_message(self, message: dict[str, Any]) -> Closing | None:
        assert self.audio is not None and self.source is not None
        try:
            event = _client_event(message)
            kind = event["type"]
            if kind == "input_audio_buffer.append":
                self.audio.push(_audio(event))
            elif kind == "input_audio_buffer.commit":
                self.source.control("finalize")
            elif kind == "input_audio_buffer.clear":
                self.source.control("clear")
            elif kind in ("session.update", "transcription_session.update"):
                if (
                    self.session.updated(
                        event.get("session"), beta=kind.startswith("transcription")
                    )
                    != self.session
                ):
                    raise EventError(
                        "the session is fixed once audio has been appended: open a new connection"
                    )
                updated = (
                    "transcription_session.updated"
                    if kind.startswith("transcription")
                    else "session.updated"
                )
                self.post_native(
                    self._event(updated, session=self.session.describe(self.beta, self.session_id))
                )
            else:
                raise EventError(
                    f"unsupported event {kind!r} in a transcription session", code="unknown_event"
                )
        except EventError as refused:
            self.post_native(self._error(refused))
        return None

    # -- records to OpenAI's events -------------------------------------------------------------

    def wire(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        kind = record["type"]
        if kind == "vad":
            return self._vad(record)
        if kind == "interim":
            return self._delta(record["utterance"], record["committed"])
        if kind == "final":
            return self._final(record)
        if kind == "error":
            return [
                self._error(EventError(record["message"], code="server_error"), kind="server_error")
            ]
        return []  # stats: livecap's own

    def _item(self, utterance: int) -> str:
        if utterance not in self._items:
            self._items[utterance] = f"item_{uuid.uuid4().hex[:20]}"
        return self._items[utterance]

    def _vad(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        utterance, at_ms = record["utterance"], int(record["at"] * 1000)
        if record["kind"] == "speech_started":
            self._items.pop(utterance, None)  # a number a dropped utterance had is used again
            return [
                self._event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=at_ms,
                    item_id=self._item(utterance),
                )
            ]
        if record["kind"] == "speech_stopped":
            item = self._item(utterance)
            out = [
                self._event("input_audio_buffer.speech_stopped", audio_end_ms=at_ms, item_id=item)
            ]
            if record["kept"]:
                out.append(
                    self._event(
                        "input_audio_buffer.committed",
                        item_id=item,
                        previous_item_id=self._previous,
                    )
                )
                self._previous = item
            return out
        if record["kind"] == "finalized" and utterance is None:
            return [
                self._error(
                    EventError(
                        "the buffer is empty: no speech to commit",
                        "input_audio_buffer_commit_empty",
                    )
                )
            ]
        if record["kind"] == "cleared":
            return [self._event("input_audio_buffer.cleared")]
        return []

    def _delta(self, utterance: int, committed: str) -> list[dict[str, Any]]:
        """The words committed since the last delta of this
        turn (none when the text went another way)."""
        sent = self._sent.get(utterance, "")
        committed = committed.strip()
        if len(committed) <= len(sent) or not committed.startswith(sent):
            return []
        self._sent[utterance] = committed
        return [
            self._event(
                "conversation.item.input_audio_transcription.delta",
                item_id=self._item(utterance),
                content_index=0,
                delta=committed[len(sent) :],
            )
        ]

    def _final(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        utterance = record["utterance"]
        texts = self._texts.setdefault(utterance, [])
        texts.append(record["text"].strip())
        if not record.get("last_in_utterance", True):
            return []
        transcript = " ".join(t for t in texts if t)
        # the rest of the words, when the final goes on from the deltas
        out = self._delta(utterance, transcript)
        out.append(
            self._event(
                "conversation.item.input_audio_transcription.completed",
                item_id=self._item(utterance),
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(record["end"] - record["start"], 3)},
            )
        )
        for table in (self._texts, self._sent, self._items):
            table.pop(utterance, None)
        return out

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:  # noqa: ANN401 - JSON values
        return {"type": kind, "event_id": f"event_{next(self._ids)}", **fields}

    def _error(self, refused: EventError, kind: str = "invalid_request_error") -> dict[str, Any]:
        return error_event(
            refused.message, refused.code, refused.param, kind, event_id=f"event_{next(self._ids)}"
        )
