"""A pool of ASR workers shared by any number of streams, with finals before interims.

Jobs go to a ThreadPoolExecutor only when a worker is free, so the choice of the next job is made
as late as possible: a final always goes first (oldest first, across streams); an interim runs
only when no final waits, at most one runs per stream, and a newer interim replaces a queued one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from livecap.asr.base import AsrBackend, AsrRequest, AsrResult
from livecap.messages import Utterance

Done = Callable[["AsrJob", AsrResult | None, BaseException | None], None]


class Cancelled(Exception):
    """The job was withdrawn before it ran."""


@dataclass
class AsrJob:
    """A request and where its result goes; the utterance says which stream and which seq it is."""

    utterance: Utterance
    request: AsrRequest
    on_done: Done
    t_submitted: float = field(default_factory=time.monotonic)
    t_started: float = 0.0
    t_finished: float = 0.0


class AsrPool:
    """Shared ASR workers. `on_done` callbacks run on a worker thread and must be quick."""

    def __init__(self, backend: AsrBackend, workers: int) -> None:
        self.backend = backend
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr")
        self._lock = threading.Lock()
        self._free = workers
        self._finals: deque[AsrJob] = deque()
        self._interims: dict[str, AsrJob] = {}  # queued interim per stream
        self._interim_running: set[str] = set()
        self.busy_seconds = 0.0
        self.interims_skipped = 0

    def submit_final(self, job: AsrJob) -> None:
        with self._lock:
            self._finals.append(job)
            self._pump()

    def submit_interim(self, job: AsrJob) -> bool:
        """Queue an interim unless one for the stream is still running; False when skipped."""
        stream = job.utterance.stream_id
        with self._lock:
            if stream in self._interim_running:
                self.interims_skipped += 1
                return False
            if stream in self._interims:
                self.interims_skipped += 1
            self._interims[stream] = job
            self._pump()
            return True

    def cancel_finals(self, stream_id: str) -> None:
        """Withdraw a stream's queued finals; each is reported done with `Cancelled`."""
        with self._lock:
            cancelled = [job for job in self._finals if job.utterance.stream_id == stream_id]
            self._finals = deque(job for job in self._finals if job.utterance.stream_id != stream_id)
        for job in cancelled:
            job.on_done(job, None, Cancelled())

    def drop_interim(self, stream_id: str) -> None:
        """Forget a queued interim (its utterance just ended)."""
        with self._lock:
            self._interims.pop(stream_id, None)

    def depth(self) -> tuple[int, int]:
        """Queued finals and interims."""
        with self._lock:
            return len(self._finals), len(self._interims)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _pump(self) -> None:
        """Start queued jobs on free workers; called with the lock held."""
        while self._free:
            if self._finals:
                job = self._finals.popleft()
            elif self._interims:
                stream = min(self._interims, key=lambda s: self._interims[s].t_submitted)
                job = self._interims.pop(stream)
                self._interim_running.add(stream)
            else:
                return
            self._free -= 1
            self._executor.submit(self._run, job)

    def _run(self, job: AsrJob) -> None:
        job.t_started = time.monotonic()
        result: AsrResult | None = None
        error: BaseException | None = None
        try:
            result = self.backend.transcribe(job.request)
        except Exception as failure:  # a crash in one job must not take the stream down
            error = failure
        job.t_finished = time.monotonic()
        with self._lock:
            self.busy_seconds += job.t_finished - job.t_started
            self._free += 1
            if not job.utterance.final:
                self._interim_running.discard(job.utterance.stream_id)
            self._pump()
        job.on_done(job, result, error)
