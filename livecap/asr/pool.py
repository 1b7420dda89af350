"""A pool of ASR workers shared by any number of streams, with finals before interims.

Jobs go to a ThreadPoolExecutor only when a worker is free, so the choice of the next job is made
as late as possible: a final always goes first (oldest first, across streams); an interim runs
only when no final waits, at most one runs per stream, and a newer interim replaces a queued one.

Batching (`batch_size` > 1, with a backend that has `transcribe_batch`): a free worker takes up to
`batch_size` queued finals at once, oldest first, from any streams (a file's packed windows, or
finals of many live streams), and runs them as one backend call; each keeps its own decoding
options. Fewer than `batch_size` waiting are held until the oldest of them has waited
`batch_wait_ms`, so a lone final is delayed by at most that, and no interim starts while finals
are held. Released finals are shared out among the free workers (up to `batch_size` each), so no
worker idles while another runs a batch (on 2 CPU cores two 1-thread workers beat one 2-thread
worker: scripts/batch_bench.py). A lone final goes through the batch call too (WhisperBackend
then encodes a window once for both language detection and decoding). Interims are never
batched: each is cut to its own length, so they share no shape. Each job of a batch gets its
own result or its own error, and its own on_done; streams put results back in order themselves
(the Reorderer), so completion order does not matter.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from livecap.asr.base import AsrBackend, AsrRequest, AsrResult, BatchAsrBackend
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
    shared_by: int = 1  # jobs in the backend call that ran this one

    @property
    def cost(self) -> float:
        """This job's share of worker time: a batch's time is split evenly among its jobs."""
        return (self.t_finished - self.t_started) / self.shared_by


class AsrPool:
    """Shared ASR workers. `on_done` callbacks run on a worker thread and must be quick."""

    def __init__(self, backend: AsrBackend, workers: int, *, batch_size: int = 1, batch_wait_ms: float = 5.0) -> None:
        self.backend = backend
        self.workers = workers
        self.batch_size = batch_size if isinstance(backend, BatchAsrBackend) else 1
        self.batch_wait = batch_wait_ms / 1000
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr")
        self._lock = threading.Lock()
        self._free = workers
        self._finals: deque[AsrJob] = deque()
        self._interims: dict[str, AsrJob] = {}  # queued interim per stream
        self._interim_running: set[str] = set()
        self._timer: threading.Timer | None = None  # wakes the pump when held finals are due
        self._closed = False
        self.busy_seconds = 0.0
        self.interims_skipped = 0
        self.batches: Counter[int] = Counter()  # final calls by their number of jobs

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
        """Finish the running calls; queued and held jobs are dropped, as queued ones always were."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _pump(self) -> None:
        """Start queued jobs on free workers; called with the lock held."""
        while self._free and not self._closed:
            if self._finals:
                wait = self._finals[0].t_submitted + self.batch_wait - time.monotonic()
                if len(self._finals) < self.batch_size and wait > 0:
                    self._wake_in(wait)
                    return  # held for a fuller batch: no interim jumps in meanwhile
                calls = min(self._free, len(self._finals))  # share out: no free worker idles
                size = min(self.batch_size, -(-len(self._finals) // calls))
                for _ in range(calls):
                    jobs = [self._finals.popleft() for _ in range(min(size, len(self._finals)))]
                    self.batches[len(jobs)] += 1
                    self._free -= 1
                    self._executor.submit(self._run, jobs)
                continue
            if not self._interims:
                return
            stream = min(self._interims, key=lambda s: self._interims[s].t_submitted)
            self._interim_running.add(stream)
            self._free -= 1
            self._executor.submit(self._run, [self._interims.pop(stream)])

    def _wake_in(self, seconds: float) -> None:
        """Pump again in `seconds`, when the oldest held final is due (lock held)."""
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(seconds, self._wake)
            self._timer.daemon = True
            self._timer.start()

    def _wake(self) -> None:
        with self._lock:
            self._timer = None
            self._pump()

    def _run(self, jobs: list[AsrJob]) -> None:
        started = time.monotonic()
        outcomes: list[AsrResult | BaseException]
        try:
            if self.batch_size > 1:  # a lone final too: the batch path may do less work (its backend's say)
                outcomes = list(self.backend.transcribe_batch([job.request for job in jobs]))  # type: ignore[attr-defined]
            else:
                outcomes = [self.backend.transcribe(jobs[0].request)]
        except Exception as failure:  # a crash in one call must not take the streams down
            outcomes = [failure] * len(jobs)
        finished = time.monotonic()
        for job in jobs:
            job.t_started, job.t_finished, job.shared_by = started, finished, len(jobs)
        with self._lock:
            self.busy_seconds += finished - started
            self._free += 1
            for job in jobs:
                if not job.utterance.final:
                    self._interim_running.discard(job.utterance.stream_id)
            self._pump()
        for job, outcome in zip(jobs, outcomes):
            if isinstance(outcome, BaseException):
                job.on_done(job, None, outcome)
            else:
                job.on_done(job, outcome, None)
