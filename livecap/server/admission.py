"""Admission: how many live streams fit, and a waiting list for what does not fit now.

With `--max-streams auto` (the default) the limit is an estimate from measured load: a stream
costs the worker-seconds its finals take per second of audio (measured on this server's live
streams; before a minute of them, one final of the start-up calibration per `PRIOR_UTTERANCE_S`)
plus its smallest interim budget, one interim (of the measured cost) every `SLOWEST_INTERIM_S`.
Streams are admitted while their sum stays within `LOAD_TARGET` of the workers and their smallest
interim budgets fit the pool's interim workers. A fixed `--max-streams N` is used as it is.

What does not fit waits in a `WaitingList`: first come, first served, up to `max_wait_s`, and is
told its place (and an estimate of the wait from the recent pace of departures) whenever it
changes; leaving frees the place. Live streams and shared sessions share one list; uploads have
their own.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import numpy as np

from livecap.asr.base import AsrRequest

PRIOR_UTTERANCE_S = 6.0  # before live streams are measured: one final per this much audio
MEASURED_AFTER_S = 60.0  # live audio after which the measured finals cost replaces the prior
SLOWEST_INTERIM_S = 2.0  # the slowest interim cadence a stream is admitted with
LOAD_TARGET = 0.9  # the share of the workers that admitted streams may need at that cadence
RELEASES_KEPT = 8  # departures the waiting time is estimated from

Told = Callable[[int, float | None], None]

_calibrations: weakref.WeakKeyDictionary[Any, tuple[float, float]] = weakref.WeakKeyDictionary()


class Refused(Exception):
    """No place now (or none within the wait allowed); the message says why."""


def calibrate(backend: Any, word_timestamps: bool) -> tuple[float, float]:
    """Seconds one final and one interim call take on the bundled sample (after a warm-up call),
    measured once per backend: the load figures to start from."""
    if backend in _calibrations:
        return _calibrations[backend]
    from livecap.sources.file import decode_blocks

    with resources.as_file(resources.files("livecap") / "data" / "sample.flac") as path:
        audio = np.concatenate(list(decode_blocks(path, 0.1)))[: 16_000 * 5]
    final = AsrRequest(audio, final=True, word_timestamps=word_timestamps, live=True)
    backend.transcribe(final)  # warm-up
    costs = []
    for request in (final, AsrRequest(audio, final=False, live=True)):
        started = time.monotonic()
        backend.transcribe(request)
        costs.append(time.monotonic() - started)
    _calibrations[backend] = (costs[0], costs[1])
    return _calibrations[backend]


@dataclass(frozen=True)
class Estimate:
    """How many live streams fit, and the figures it came from (shown in /status)."""

    streams: int
    finals_per_audio_s: float  # worker-seconds of finals per second of one stream's audio
    interim_cost_s: float  # worker-seconds of one interim
    # worker-seconds per audio second a stream needs at the slowest interim cadence
    per_stream: float
    basis: str  # "calibration" or "measured"
    measured_audio_s: float

    def describe(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "finals_per_audio_s": round(self.finals_per_audio_s, 4),
            "interim_cost_s": round(self.interim_cost_s, 4),
            "per_stream": round(self.per_stream, 4),
            "slowest_interim_s": SLOWEST_INTERIM_S,
            "load_target": LOAD_TARGET,
            "basis": self.basis,
            "measured_audio_s": round(self.measured_audio_s, 1),
        }


def estimate(
    workers: int, interim_workers: int, prior: tuple[float, float], measured: tuple[float, float],
    interim_cost: float | None,
) -> Estimate:
    """Streams that fit `workers`: `prior` is the calibration (final, interim call seconds),
    `measured` the live streams' (final worker-seconds, audio seconds), `interim_cost` the pool's
    usual interim call (None before one ran)."""
    final_s, audio_s = measured
    basis = "measured" if audio_s >= MEASURED_AFTER_S else "calibration"
    finals = final_s / audio_s if basis == "measured" else prior[0] / PRIOR_UTTERANCE_S
    interim = interim_cost if interim_cost is not None else prior[1]
    smallest_interims = interim / SLOWEST_INTERIM_S
    need = finals + smallest_interims
    by_compute = int(workers * LOAD_TARGET / need) if need > 0 else 1_000
    by_interims = int(interim_workers / smallest_interims) if smallest_interims > 0 else 1_000
    return Estimate(max(1, min(by_compute, by_interims)), finals, interim, need, basis, audio_s)


class Gate(Protocol):
    """What a waiting list admits into: whether one more fits
    now, and taking or giving back a place."""

    def fits(self) -> bool: ...

    def take(self) -> None: ...

    def give_back(self) -> None: ...


class Waiter:
    """One place in line: told its position, its future set once it has a place."""

    def __init__(self, told: Told) -> None:
        self.told = told
        self.admitted = asyncio.get_running_loop().create_future()
        self.position = 0
        self.since = time.monotonic()
        self.given_back = False  # admitted, but it left before using its place: given to the next

    @property
    def placed(self) -> bool:
        """Admitted: it holds a place (and must give it back)."""
        done = self.admitted.done() and not self.admitted.cancelled()
        return done and self.admitted.exception() is None


class WaitingList:
    """First come, first served places for a `Gate` (event loop only)."""

    def __init__(self, gate: Gate, what: str, max_wait_s: float, max_waiting: int) -> None:
        self.gate = gate
        self.what = what  # "streams", "uploads": for the reasons given
        self.max_wait_s = max_wait_s
        self.max_waiting = max_waiting
        self._waiting: deque[Waiter] = deque()
        self._releases: deque[float] = deque(maxlen=RELEASES_KEPT)
        self.admitted_after_wait = 0
        self.timed_out = 0

    def __len__(self) -> int:
        return len(self._waiting)

    async def enter(self, told: Told) -> None:
        """Take a place now, or wait for one in line (`told(position, eta_s)` on each
        change); `Refused` when none comes within `max_wait_s` or the line is full.
        Cancelling frees the place."""
        if not self.take_now():
            await self.wait(self.join(told))

    def take_now(self) -> bool:
        """Take a place if one is free and nobody waits for it."""
        if not self._waiting and self.gate.fits():
            self.gate.take()
            return True
        return False

    def full(self) -> bool:
        """A newcomer would be refused now: no free place, and no room in line (or no waiting)."""
        if not self._waiting and self.gate.fits():
            return False
        return self.max_wait_s <= 0 or len(self._waiting) >= self.max_waiting

    def join(self, told: Told) -> Waiter:
        """Stand in line (told the position at once);
        `Refused` when waiting is off or the line is full."""
        if self.max_wait_s <= 0:
            raise Refused(f"at capacity ({self.what}): try again later")
        if len(self._waiting) >= self.max_waiting:
            raise Refused(
                f"at capacity ({self.what}), and {len(self._waiting)} are already waiting: try "
                "again later"
            )
        waiter = Waiter(told)
        self._waiting.append(waiter)
        self._tell()
        return waiter

    async def wait(self, waiter: Waiter) -> None:
        """Until `waiter` has its place (then it holds it), or `Refused` after `max_wait_s`."""
        timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._expire, waiter)
        try:
            await waiter.admitted
        except asyncio.CancelledError:
            self.give_up(waiter)
            raise
        finally:
            timer.cancel()
            self.leave(waiter)

    def give_up(self, waiter: Waiter) -> None:
        """`waiter` leaves without its place: out of the line, and a place it was given just now
        (unused) goes to the next one. Once is enough: again does nothing."""
        if waiter.placed and not waiter.given_back:
            waiter.given_back = True
            self.gate.give_back()
            self.kick()
        self.leave(waiter)

    def _expire(self, waiter: Waiter) -> None:
        if not waiter.admitted.done():
            self.timed_out += 1
            waiter.admitted.set_exception(
                Refused(
                    f"at capacity ({self.what}): no place within {self.max_wait_s:g} s of waiting; "
                    "try again later"
                )
            )
            self.leave(waiter)

    def leave(self, waiter: Waiter) -> None:
        """Take `waiter` out of the line (the others move up)."""
        if waiter in self._waiting:
            self._waiting.remove(waiter)
            self._tell()

    def released(self) -> None:
        """A place was given back: note the pace of departures and admit who fits."""
        self._releases.append(time.monotonic())
        self.kick()

    def kick(self) -> None:
        """Admit waiters from the head of the line while they fit."""
        moved = False
        while self._waiting and self.gate.fits():
            waiter = self._waiting.popleft()
            self.gate.take()
            self.admitted_after_wait += 1
            waiter.admitted.set_result(None)
            moved = True
        if moved:
            self._tell()

    def eta(self, position: int) -> float | None:
        """Seconds until `position` is admitted at the recent
        pace of departures (None: no pace yet)."""
        if len(self._releases) < 2:
            return None
        gap = (self._releases[-1] - self._releases[0]) / (len(self._releases) - 1)
        return round(position * gap, 1)

    def describe(self) -> list[dict[str, Any]]:
        """Each place in line: its position, how long it has waited, the estimated wait left."""
        now = time.monotonic()
        return [
            {"position": at, "waited_s": round(now - waiter.since, 1), "eta_s": self.eta(at)}
            for at, waiter in enumerate(self._waiting, start=1)
        ]

    def _tell(self) -> None:
        for position, waiter in enumerate(self._waiting, start=1):
            if waiter.position != position:
                waiter.position = position
                waiter.told(position, self.eta(position))


def queued_record(position: int, eta_s: float | None) -> dict[str, Any]:
    """The `queued` event of the live protocol."""
    return {"type": "queued", "position": position, "eta_s": eta_s}
