"""Ctrl-C, SIGTERM and SIGHUP are counted instead of raising, so that no event is half-handled and
the captions so far are always written. Outside a counted block (while the command line loads,
parses and writes) they raise `Interrupted`, which ends the command with one word and 128 + the
signal's number. Signals belong to the command line, not the library."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(BaseException):
    """A stop signal outside a counted block. Not a KeyboardInterrupt: typer turns that into a
    silent exit 130, and this must reach `livecap.cli.main` to be said, with its own exit code."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_raised = False


def _interrupt(signum: int, frame: object) -> None:  # noqa: ARG001
    """Raise once: a second signal while the first unwinds must not interrupt its cleanup."""
    global _raised
    if not _raised:
        _raised = True
        raise Interrupted(signum)


def raise_on_stop_signals() -> None:
    """From the command line's first moment, a stop signal raises `Interrupted` (by default SIGTERM
    and SIGHUP would kill the process without a word)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _interrupt)


class StopRequests:
    """Counts stop signals; `last` is the most recent one (its exit code is 128 + its number)."""

    def __init__(self) -> None:
        self.count = 0
        self.last: int | None = None

    def __call__(self) -> int:
        return self.count

    def _handle(self, signum: int, frame: object) -> None:  # noqa: ARG002
        self.count += 1
        self.last = signum

    @property
    def exit_code(self) -> int:
        return 128 + (self.last or signal.SIGINT)


@contextmanager
def counting_stop_signals() -> Iterator[StopRequests]:
    """Count stop signals while the block runs (main thread only), then restore the handlers."""
    requests = StopRequests()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, requests._handle)
    try:
        yield requests
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
