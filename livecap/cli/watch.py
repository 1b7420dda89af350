"""The terminal as a client of a `livecap serve` session: `livecap watch URL/SESSION` shows a
session's captions, and `livecap mic --publish URL` feeds one from the microphone. Both speak the
server's WebSocket protocol with `websockets` and the standard library only: the command line never
imports the server (and `websockets` comes with `livecap[server]`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from livecap.cli import options as opt
from livecap.closecodes import ABNORMAL, NORMAL, REJOIN

if TYPE_CHECKING:  # loaded when a command runs, so that `livecap -h` stays quick
    from livecap.cli.signals import StopRequests
    from livecap.messages import Caption, InterimCaption
    from livecap.pipeline.runner import Display
    from livecap.pipeline.stats import StatsSnapshot

POLL_S = 0.25  # how often a waiting client looks at Ctrl-C
CLOSE_WAIT_S = 30.0  # after Ctrl-C, how long a publisher waits for the finals of what it sent
# a viewer cut off (too slow, or its replica went away) rejoins this often, then gives up
MAX_REJOINS = 5
# before rejoining after a dropped connection: the balancer finds another replica
REJOIN_PAUSE_S = 1.0
PUBLISH_AUDIO = ("opus", "pcm")  # what `mic --publish` may send


@dataclasses.dataclass(frozen=True)
class Target:
    """A server and a session on it, from a URL such as http://host:8000/SESSION (the page's viewer
    link, ?watch=SESSION, works too)."""

    base: str  # http(s)://host:port
    session: str | None
    api_key: str | None

    @classmethod
    def parse(cls, url: str, api_key: str | None = None) -> Target:
        from livecap.errors import LivecapError

        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
            raise LivecapError(
                f"{url}: give the server's address, such as http://127.0.0.1:8000/SESSION"
            )
        query = urllib.parse.parse_qs(parts.query)
        path = [p for p in parts.path.split("/") if p]
        if "sessions" in path and path.index("sessions") + 1 < len(path):
            session: str | None = path[path.index("sessions") + 1]
        else:
            session = (query.get("watch") or [path[-1] if path else None])[0]
        scheme = "https" if parts.scheme in ("https", "wss") else "http"
        key = (
            api_key
            or (query.get("api_key") or [None])[0]
            or os.environ.get("LIVECAP_API_KEY")
            or None
        )
        return cls(f"{scheme}://{parts.netloc}", session, key)

    def socket(self, what: str) -> str:
        assert self.session is not None
        return (
            self.base.replace("http", "ws", 1)
            + f"/v1/sessions/{urllib.parse.quote(self.session)}/{what}"
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def create_publish_session(self) -> str:
        """POST /v1/sessions {"source": "publish"}: the new session's id."""
        from livecap.errors import LivecapError

        request = urllib.request.Request(
            self.base + "/v1/sessions",
            data=b'{"source": "publish"}',
            method="POST",
            headers={"Content-Type": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)["id"]
        except urllib.error.HTTPError as error:
            raise LivecapError(
                f"{self.base}: cannot create a session: {_error_message(error)}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise LivecapError(
                f"{self.base}: cannot reach the server ({getattr(error, 'reason', error)})"
            ) from None


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {error.code}"


# -- records from the server back into the events a display shows ---------------------------------


def caption_from(record: dict[str, Any]) -> Caption:
    """A final caption from its network record."""
    from livecap.messages import Caption, Word

    return Caption(
        stream_id="",
        seq=record["seq"],
        start=record["start"],
        end=record["end"],
        text=record["text"],
        final=True,
        language=record.get("language"),
        translation=record.get("translation"),
        translation_failed=bool(record.get("translation_failed")),
        words=tuple(
            Word(w["start"], w["end"], w["word"], w["probability"], w.get("speaker"))
            for w in record.get("words") or ()
        ),
        speaker=record.get("speaker"),
    )


def interim_from(record: dict[str, Any]) -> InterimCaption:
    """An interim caption from its network record."""
    from livecap.messages import InterimCaption

    return InterimCaption(
        stream_id="",
        utterance=record["utterance"],
        committed=record["committed"],
        tail=record["tail"],
        new_words=0,
        t_audio_end=0.0,
        audio_end=record.get("audio_end", 0.0),
    )


def stats_from(record: dict[str, Any]) -> StatsSnapshot:
    """The footer's figures; a field the record lacks is unknown (None) or zero."""
    from livecap.pipeline.stats import StatsSnapshot

    values = {}
    for f in dataclasses.fields(StatsSnapshot):
        values[f.name] = record.get(f.name, None if "None" in str(f.type) else 0)
    return StatsSnapshot(**values)


class Relay:
    """Hands records to a display: each final once (a rejoin
    repeats the history), the rest as is."""

    def __init__(self, view: Display, jsonl: bool) -> None:
        self.view = view
        self.jsonl = jsonl
        self.shown = -1
        self.stats = stats_from({})
        self.ended: str | None = None
        self.ready = False  # the server gave the stream its place: audio may go

    def take(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind == "final":
            if record["seq"] <= self.shown:
                return
            self.shown = record["seq"]
        if self.jsonl:
            print(json.dumps(record, ensure_ascii=False), flush=True)
        elif kind == "final":
            self.view.final(caption_from(record), record.get("latency") or {})
        elif kind == "interim":
            self.view.interim(interim_from(record))
        elif kind == "speaker":
            from livecap.messages import SpeakerRevision

            self.view.speakers(
                SpeakerRevision(
                    tuple((label["seq"], label["speaker"]) for label in record["labels"])
                )
            )
        elif kind == "stats":
            self.stats = stats_from(record)
        elif kind == "error":
            self.view.error(record.get("message", ""))
        elif kind == "queued":
            _notice(waiting_line(record))
        if kind == "ready":
            self.ready = True
        if kind == "end":
            self.ended = record.get("reason")
        if not self.jsonl:
            self.view.tick(self.stats)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def waiting_line(record: dict[str, Any]) -> str:
    """A `queued` event in words: "waiting: 3rd in line (about 40 s)"."""
    eta = record.get("eta_s")
    return f"waiting: {ordinal(int(record['position']))} in line" + (
        f" (about {eta:.0f} s)" if eta else ""
    )


def _notice(text: str) -> None:
    from livecap.cli.common import errors

    errors.print(f"[dim]{text}[/]", highlight=False)


def _view(plain: bool, jsonl: bool, target: Target) -> Display:
    from livecap.cli.common import console
    from livecap.cli.view import LiveView, PlainView

    if plain or jsonl or not console.is_terminal:
        return PlainView()
    return LiveView(console, f"session {target.session}", "server", target.base)


async def _receive(connection: Any, relay: Relay, stop: StopRequests, stop_at: int) -> None:
    """Records until the server closes, or until `stop_at` stop requests."""
    import websockets

    while stop.count < stop_at:
        try:
            message = await asyncio.wait_for(connection.recv(), POLL_S)
        except asyncio.TimeoutError:
            continue
        except websockets.ConnectionClosed:
            return
        relay.take(json.loads(message))


async def watch_session(target: Target, relay: Relay, stop: StopRequests) -> tuple[int | None, str]:
    """Watch until the session ends or Ctrl-C. A viewer told to rejoin (it fell behind, or its
    replica of a cluster drains) rejoins at once; one whose connection dropped before the end (its
    replica died) rejoins after a pause, through the same address (a load balancer)."""
    import websockets

    code, reason = None, ""
    for attempt in range(MAX_REJOINS + 1):
        try:
            connection = await websockets.connect(
                target.socket("captions"), additional_headers=target.headers
            )
        except (OSError, websockets.InvalidHandshake) as error:
            if attempt == 0:
                return None, f"cannot connect to {target.base}: {error}"
            await asyncio.sleep(REJOIN_PAUSE_S)
            continue
        await _receive(connection, relay, stop, 1)
        await connection.close()
        code, reason = connection.close_code, connection.close_reason or ""
        if stop.count or relay.ended is not None or code not in (REJOIN, ABNORMAL):
            return code, reason
        if code == ABNORMAL:
            await asyncio.sleep(REJOIN_PAUSE_S)
    return code, reason


async def publish_source(
    target: Target,
    source: Any,
    relay: Relay,
    stop: StopRequests,
    duration: float | None,
    opus: bool = True,
) -> tuple[int | None, str]:
    """Send a live source's audio (Ogg Opus, or s16le at its own rate) to the session; show what
    comes back. Ctrl-C (or `duration`) sends the end and waits for the last finals; a second Ctrl-C
    leaves."""
    import websockets

    from livecap.sources.queue import CaptureQueue, EndOfAudio

    try:
        connection = await websockets.connect(
            target.socket("publish"), additional_headers=target.headers
        )
    except (OSError, websockets.InvalidHandshake) as error:
        return None, f"cannot connect to {target.base}: {error}"
    encode = _encoder(source.rate, opus)
    fmt = "opus" if opus else "s16le"
    await connection.send(
        json.dumps({"type": "start", "sample_rate": source.rate, "sample_format": fmt})
    )
    receiver = asyncio.create_task(_receive(connection, relay, stop, 2))
    while not (relay.ready or receiver.done() or stop.count):
        # a busy server puts the session in line first
        await asyncio.sleep(POLL_S)
    sink = CaptureQueue(max_blocks=300)
    source.start(sink)
    sent = 0.0
    try:
        while not stop.count and not receiver.done() and (duration is None or sent < duration):
            block = await asyncio.to_thread(sink.get, POLL_S)
            if isinstance(block, EndOfAudio):
                if block.error:
                    relay.view.error(block.error)
                break
            if block is not None:
                data = encode(block.samples)
                if data:
                    await connection.send(data)
                sent += len(block.samples) / source.rate
        tail = encode(None)
        if tail:
            await connection.send(tail)
        await connection.send(json.dumps({"type": "end"}))
    except websockets.ConnectionClosed:
        pass
    finally:
        source.stop()
    try:
        await asyncio.wait_for(receiver, CLOSE_WAIT_S)
    except asyncio.TimeoutError:
        pass
    await connection.close()
    return connection.close_code, connection.close_reason or ""


def _encoder(rate: int, opus: bool) -> Callable[[Any], bytes]:
    """Float32 blocks as what is sent (None: the end): Ogg Opus pages, or s16le PCM."""
    import numpy as np

    if not opus:
        return lambda samples: (
            b"" if samples is None else (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
        )
    from livecap.sources.codecs import OggOpusEncoder

    encoder = OggOpusEncoder(rate)
    return lambda samples: encoder.close() if samples is None else encoder.encode(samples)


def _finish(code: int | None, reason: str, relay: Relay, stop: StopRequests) -> None:
    """Say how it ended; exit 0 for a clean end, 130 after Ctrl-C, 1 otherwise."""
    from livecap.cli.common import errors, report_error

    if stop.count:
        raise typer.Exit(stop.exit_code)
    if code == NORMAL:
        errors.print(f"[dim]{relay.ended or reason or 'ended'}[/]", highlight=False)
        return
    report_error(reason or f"the connection closed ({code})")
    raise typer.Exit(1)


def _run(view: Display, job: Any) -> tuple[int | None, str]:
    view.start()
    try:
        return asyncio.run(job)
    finally:
        view.stop()


ApiKey = Annotated[
    Optional[str],
    typer.Option(envvar="LIVECAP_API_KEY", help="the server's key (or ?api_key= in the URL)"),
]


def watch_command(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL", help="the session: http://HOST:PORT/SESSION (or the page's viewer link)"
        ),
    ],
    api_key: ApiKey = None,
    plain: opt.Plain = False,
    jsonl: opt.Jsonl = False,
) -> None:
    """Watch a shared session's captions (served by `livecap serve`): the finals so far, then live.
    Ctrl-C leaves."""
    from livecap.cli.signals import counting_stop_signals
    from livecap.errors import LivecapError

    target = Target.parse(url, api_key)
    if not target.session:
        raise LivecapError(
            f"{url}: name the session, such as {target.base}/SESSION (GET /v1/sessions lists them)"
        )
    relay = Relay(_view(plain, jsonl, target), jsonl)
    with counting_stop_signals() as stop:
        code, reason = _run(relay.view, watch_session(target, relay, stop))
    _finish(code, reason, relay, stop)


def publish_microphone(
    url: str,
    input_device: str | None,
    duration: float | None,
    plain: bool,
    jsonl: bool,
    audio: str = "opus",
) -> None:
    """`livecap mic --publish URL`: the microphone feeds a session on a server (a new one, or the
    publish session the URL names); the server transcribes, this terminal shows what it sends back.
    `audio`: opus (Ogg Opus, a seventh of 16 kHz PCM's bytes or less) or pcm."""
    from livecap.cli.common import errors
    from livecap.cli.signals import counting_stop_signals
    from livecap.errors import LivecapError
    from livecap.sources.mic import MicSource

    if audio not in PUBLISH_AUDIO:
        raise LivecapError(f"--publish-audio must be {' or '.join(PUBLISH_AUDIO)}, not {audio!r}")

    target = Target.parse(url)
    if not target.session:
        target = dataclasses.replace(target, session=target.create_publish_session())
    source = MicSource(input_device)
    viewers = f"{target.base}/?watch={target.session}"
    errors.print(
        f"[dim]publishing {source.name} ({source.rate} Hz) to session {target.session}; viewers: "
        f"{viewers} or `livecap watch {target.base}/{target.session}`; Ctrl-C stops[/]",
        highlight=False,
        soft_wrap=True,
    )
    relay = Relay(_view(plain, jsonl, target), jsonl)
    with counting_stop_signals() as stop:
        code, reason = _run(
            relay.view, publish_source(target, source, relay, stop, duration, opus=audio == "opus")
        )
    _finish(code, reason, relay, stop)
