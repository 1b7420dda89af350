"""Run a stream to its end: show events, journal finals, survive Ctrl-C without losing captions."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

from livecap.engine import Stream
from livecap.messages import Caption, InterimCaption, StreamEnd, StreamError
from livecap.stats import StatsSnapshot, latency_breakdown
from livecap.view import Display
from livecap.writers import Journal

TICK_S = 0.25


@dataclass
class SessionResult:
    captions: list[Caption] = field(default_factory=list)
    latencies: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    end_reason: str | None = None  # None: the audio ended normally
    stats: StatsSnapshot | None = None
    t_first_caption: float | None = None


def run_session(
    stream: Stream,
    display: Display,
    journal: Journal | None = None,
    duration: float | None = None,
) -> SessionResult:
    """Drive `stream` until it ends. The first Ctrl-C stops capture and finishes pending finals;
    a second one stops waiting. Either way the captions produced so far are returned."""
    result = SessionResult()
    interrupts = _Interrupts()
    stopping = False
    t_start = time.monotonic()
    last_tick = 0.0
    interrupts.install()
    display.start()
    stream.start()

    def handle(event: object) -> bool:
        """Show one event; True when the stream has ended."""
        nonlocal last_tick, duration
        now = time.monotonic()
        if isinstance(event, Caption):
            latency = latency_breakdown(event, now)
            stream.stats.record_final(latency)
            result.captions.append(event)
            result.latencies.append(latency)
            if result.t_first_caption is None:
                result.t_first_caption = now - t_start
            if journal is not None:
                journal.append(event, latency)
            display.final(event, latency)
        elif isinstance(event, InterimCaption):
            if event.new_words:
                stream.stats.record_interim(now - event.t_audio_end)
            display.interim(event)
        elif isinstance(event, StreamError):
            result.errors.append(event.message)
            display.error(event.message)
        elif isinstance(event, StreamEnd):
            result.end_reason = result.end_reason or event.reason
            return True
        if duration is not None and now - t_start >= duration:
            stream.stop()
            duration = None
        if now - last_tick >= TICK_S:
            last_tick = now
            display.tick(stream.snapshot())
        return False

    try:
        while not handle(stream.next_event(timeout=TICK_S)):
            if interrupts.count and not stopping:
                stopping = True
                result.end_reason = "interrupted"
                stream.stop("interrupted")
            if interrupts.count >= 2:
                break
    finally:
        stream.stop()
        result.stats = stream.snapshot()
        display.tick(result.stats)
        display.stop()
        if journal is not None:
            journal.close()
        interrupts.restore()
    return result


class _Interrupts:
    """Counts Ctrl-C and SIGTERM instead of raising, so that no event is half-handled."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:  # noqa: ARG002
        self.count += 1

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
