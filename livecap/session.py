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
    interrupts = 0
    t_start = time.monotonic()
    last_tick = 0.0
    previous = _install_sigterm()
    display.start()
    stream.start()
    events = stream.events(timeout=TICK_S)
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
        while True:
            try:
                if handle(next(events)):
                    break
            except KeyboardInterrupt:
                interrupts += 1
                stream.stop("interrupted")
                if interrupts >= 2:
                    result.end_reason = "interrupted"
                    break
            except StopIteration:
                break
    finally:
        stream.stop()
        result.stats = stream.snapshot()
        display.tick(result.stats)
        display.stop()
        if journal is not None:
            journal.close()
        _restore_sigterm(previous)
    return result


def _install_sigterm():  # noqa: ANN202
    """Treat SIGTERM like Ctrl-C so that a killed session still writes its captions."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):  # noqa: ANN001, ARG001
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:  # noqa: ANN001
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
