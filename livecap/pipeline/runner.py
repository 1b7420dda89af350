"""Run a stream to its end: hand events to a display, journal finals, stop when asked, lose nothing.

This is the one place a stream's events are told apart. The loop knows nothing of terminals,
signals or sockets: the caller passes a `Display` (a terminal view, a network connection: the
server's `RecordFeed`, or nothing) and a `stop_requests` counter (the CLI counts Ctrl-C and SIGTERM
in it; a server counts shutdown requests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from livecap.messages import (
    Caption,
    InterimCaption,
    SpeakerRevision,
    StreamEnd,
    StreamError,
    VadEvent,
)
from livecap.pipeline.stats import StatsSnapshot, latency_breakdown
from livecap.pipeline.stream import Stream

TICK_S = 0.25


class Display(Protocol):
    """Receives a stream's events, from one thread; must not block the pipeline for long."""

    def start(self) -> None: ...

    def final(self, caption: Caption, latency: dict[str, float]) -> None: ...

    def interim(self, event: InterimCaption) -> None: ...

    def error(self, message: str) -> None: ...

    def tick(self, stats: StatsSnapshot) -> None: ...

    def stop(self) -> None: ...

    def vad(self, event: VadEvent) -> None:
        """What the VAD decided: only a stream opened with
        `vad_events` (a protocol adapter) has these."""

    def speakers(self, event: SpeakerRevision) -> None:
        """Earlier finals' speakers, revised: only a live stream with `diarize` on has these."""


class NoDisplay(Display):
    """Shows nothing (every method is the protocol's empty
    one): for callers that only want the result."""


class CaptionSink(Protocol):
    """Where finals are kept as they come (a journal), so that a crash loses none of them."""

    def append(self, caption: Caption, latency: dict[str, float] | None = None) -> None: ...

    def close(self) -> None: ...


@dataclass
class RunResult:
    """What a run gave: its captions, their latencies, errors and why it ended."""
    captions: list[Caption] = field(default_factory=list)
    latencies: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    end_reason: str | None = None  # None: the audio ended normally
    stats: StatsSnapshot | None = None
    t_first_caption: float | None = None


def revise(captions: list[Caption], event: SpeakerRevision) -> None:
    """Apply a speaker revision to kept captions (in seq order), words included."""
    if not captions:
        return
    first = captions[0].seq
    for seq, speaker in event.labels:
        index = seq - first
        if 0 <= index < len(captions) and captions[index].seq == seq:
            c = captions[index]
            captions[index] = replace(
                c, speaker=speaker, words=tuple(replace(w, speaker=speaker) for w in c.words)
            )


def run_stream(
    stream: Stream,
    display: Display | None = None,
    journal: CaptionSink | None = None,
    duration: float | None = None,
    stop_requests: Callable[[], int] = lambda: 0,
    *,
    keep: bool = True,
) -> RunResult:
    """Drive `stream` until it ends. The first stop request stops capture and finishes pending
    finals (a file stream drops the finals not yet started); a second one stops waiting. Either way
    the captions produced so far are returned; with `keep=False` none are kept (a server's
    connection: its client has them, and its memory stays bounded)."""
    display = display or NoDisplay()
    result = RunResult()
    stopping = False
    t_start = time.monotonic()
    last_tick = 0.0
    display.start()
    stream.start()

    def handle(event: object) -> bool:
        """Show one event; True when the stream has ended."""
        nonlocal last_tick, duration
        now = time.monotonic()
        if isinstance(event, Caption):
            latency = latency_breakdown(event)
            if keep:
                result.captions.append(event)
                result.latencies.append(latency)
            if result.t_first_caption is None:
                result.t_first_caption = now - t_start
            if journal is not None:
                journal.append(event, latency)
            display.final(event, latency)
        elif isinstance(event, InterimCaption):
            display.interim(event)
        elif isinstance(event, StreamError):
            result.errors.append(event.message)
            display.error(event.message)
        elif isinstance(event, VadEvent):
            display.vad(event)
        elif isinstance(event, SpeakerRevision):
            if keep:
                revise(result.captions, event)
            display.speakers(event)
        elif isinstance(event, StreamEnd):
            result.end_reason = result.end_reason or event.reason
            return True
        if duration is not None and now - t_start >= duration:
            stream.stop()
            duration = None
        if now - last_tick >= TICK_S:
            last_tick = now
            display.tick(stream.stats_snapshot())
        return False

    try:
        while not handle(stream.next_event(timeout=TICK_S)):
            requests = stop_requests()
            if requests and not stopping:
                stopping = True
                result.end_reason = "interrupted"
                stream.stop("interrupted")
            if requests >= 2:
                break
    finally:
        stream.stop()
        result.stats = stream.stats_snapshot()
        display.tick(result.stats)
        display.stop()
        if journal is not None:
            journal.close()
    return result
