"""A pool of ASR workers shared by any number of streams, with finals before interims.

Jobs are handed to a worker only when one is free, so the choice of the next job is made as late
as possible: a final always goes first (oldest first, across streams); interims run only when no
final waits, at most one per stream at a time, and a newer interim replaces a queued one. A free
worker takes up to INTERIM_BATCH queued interims (oldest first, any streams; whatever `batch_size`
says of finals, and never waiting for more) in one call, when the backend can batch: the decoder's
steps cost little more for several streams than for one, so under load every stream's interims
come more often than they would one by one.

The interim budget is the pool's, not each stream's: interim calls of all streams together run on
at most `interim_slots` workers at once (`interim_share` of the workers, at least one), so with two
workers or more a worker is always left for finals. `interim_share_for()` tells a stream its fair
part of that budget (the budget divided among the streams that asked for interims lately), and the
stream slows its interim cadence to fit it: under load every stream's interims come less often,
equally, before any final waits. `shed_interims` (memory pressure) stops interims altogether.

Stopping. `withdraw(stream)` is how a stopped stream (a file whose client left, a live stream
nobody reads any more) gives back the work nobody will use: its queued interim is dropped; with
`finals`, its queued finals too (held, or handed to a worker and not yet started), each reported
`Cancelled`; a call already running for them ends as it would, but their results are thrown away
(reported `Cancelled`, their worker time counted). A stopped stream submits nothing more (its VAD
stage drops what it has not cut), so after a stop the pool spends on it only the rest of the calls
that were running. Other streams' jobs keep their places and their order: a final is withdrawn
only for the stream that asked, so a live stream that is not stopped never loses nor reorders one.

Workers heal. A call that raises is counted on its worker; each final in it is retried once, on
another worker when there is one, and fails alone if it fails again (its stream shows an error and
goes on). A call that runs far past the expected time of its kind is declared hung: its worker
thread is abandoned (Python cannot stop it; its late result is discarded) and replaced, and its
jobs are retried or failed the same way. A worker thread that dies is replaced too. Every final is
reported exactly once, so streams, which put results back in order themselves (the Reorderer),
lose and reorder nothing. `describe_workers()` gives each worker's state, calls, failures, hangs,
restarts and last error.

Batching (`batch_size` > 1, with a backend that has `transcribe_batch`): a free worker takes up to
`batch_size` queued finals at once, oldest first, from any streams (a file's packed windows, or
finals of many live streams), and runs them as one backend call; each keeps its own decoding
options. Fewer than `batch_size` waiting are held until the oldest of them has waited
`batch_wait_ms`, so a lone final is delayed by at most that, and no interim starts while finals
are held. Released finals are shared out among the free workers (up to `batch_size` each), so no
worker idles while another runs a batch (on 2 CPU cores two 1-thread workers beat one 2-thread
worker: scripts/batch_bench.py). A lone final goes through the batch call too (WhisperBackend
then encodes a window once for both language detection and decoding). Each job of a batch gets
its own result or its own error, and its own on_done, and is charged an equal share of the call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livecap.asr.base import AsrBackend, AsrRequest, AsrResult, BatchAsrBackend
from livecap.messages import Utterance

log = logging.getLogger(__name__)

Done = Callable[["AsrJob", AsrResult | None, BaseException | None], None]
Outcome = AsrResult | BaseException

HUNG_MIN_S = 30.0  # a call is never declared hung sooner than this ...
HUNG_FACTOR = 20.0  # ... nor before this many times the usual length of a call of its kind
WATCH_S = 0.5  # how often the watchdog looks at the running calls
ACTIVE_S = 10.0  # a stream that asked for an interim this recently shares the interim budget
INTERIM_BATCH = 8  # interims of up to this many streams share a call (they are never held for it)


class Cancelled(Exception):
    """The job was withdrawn (its stream stopped): not run, or its result thrown away."""


class Hung(Exception):
    """The call ran far past its expected time; its worker was replaced."""


@dataclass(eq=False)  # a job is itself, not its fields
class AsrJob:
    """A request and where its result goes; the utterance says which stream and which seq it is."""

    utterance: Utterance
    request: AsrRequest
    on_done: Done
    t_submitted: float = field(default_factory=time.monotonic)
    t_started: float = 0.0
    t_finished: float = 0.0
    shared_by: int = 1  # jobs in the backend call that ran this one
    # worker-seconds of every attempt (a batch's time split evenly among its jobs)
    spent: float = 0.0
    attempts: int = 0  # calls that failed it so far
    # the worker whose call failed it: its retry goes elsewhere when it can
    avoid: int | None = None
    withdrawn: bool = False  # its stream withdrew it while its call ran: the result is thrown away

    @property
    def cost(self) -> float:
        """This job's share of worker time, over all its attempts."""
        return self.spent


@dataclass
class Worker:
    """One worker slot: its current thread (`generation`
    tells an abandoned one to stop) and its record."""

    index: int
    generation: int = 0
    thread: threading.Thread | None = None  # None: no thread serves this slot now
    given: list[AsrJob] | None = None  # handed over, not yet taken by the thread
    running: list[AsrJob] | None = None
    started: float = 0.0
    calls: int = 0
    failures: int = 0
    hangs: int = 0
    restarts: int = 0
    last_error: str | None = None

    @property
    def free(self) -> bool:
        return self.thread is not None and self.given is None and self.running is None

    def describe(self, now: float) -> dict[str, Any]:
        state = "down" if self.thread is None else "busy" if self.running or self.given else "idle"
        return {
            "worker": self.index,
            "state": state,
            "calls": self.calls,
            "failures": self.failures,
            "hangs": self.hangs,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "running_s": round(now - self.started, 3) if self.running else None,
        }


class AsrPool:
    """Shared ASR workers. `on_done` callbacks run on a
    worker (or the watchdog) thread and must be quick."""

    def __init__(
        self, backend: AsrBackend, workers: int, *, batch_size: int = 1, batch_wait_ms: float = 5.0,
        interim_share: float = 0.5, hung_after_s: float | None = None,
    ) -> None:
        """`interim_share`: most of the workers interims may occupy at once;
        `hung_after_s`: a fixed limit for a call (None: HUNG_FACTOR times the usual length
        of its kind, at least HUNG_MIN_S)."""
        self.backend = backend
        self.workers = workers
        self.batch_size = batch_size if isinstance(backend, BatchAsrBackend) else 1
        self.interim_batch = INTERIM_BATCH if isinstance(backend, BatchAsrBackend) else 1
        self.batch_wait = batch_wait_ms / 1000
        self.interim_slots = max(1, min(workers, int(workers * interim_share + 1e-9)))
        self.hung_after_s = hung_after_s
        self._lock = threading.Condition()
        self._slots = [Worker(i) for i in range(workers)]
        self._abandoned: list[threading.Thread] = []  # hung threads left running
        self._finals: deque[AsrJob] = deque()
        self._interims: dict[str, AsrJob] = {}  # queued interim per stream
        self._interim_running: set[str] = set()  # streams with an interim in a call
        self._interim_askers: dict[str, float] = {}  # stream -> when it last asked for an interim
        self._shed = False
        # usual seconds of a call, finals (True) and interims
        self._expected: dict[bool, float] = {}
        self._interim_job: float | None = None  # usual worker-seconds of one interim job
        self._timer: threading.Timer | None = None  # wakes the pump when held finals are due
        self._closed = False
        self._closing = threading.Event()
        self.busy_seconds = 0.0
        self.final_seconds = 0.0
        self.interim_seconds = 0.0
        self.interim_calls = 0
        self.interims_skipped = 0
        self.interims_shed = 0
        self.retries = 0
        self.cancelled = 0  # withdrawn jobs that never ran
        self.discarded = 0  # withdrawn jobs whose running call's result was thrown away
        self.batches: Counter[int] = Counter()  # final calls by their number of jobs
        with self._lock:
            for slot in self._slots:
                self._start_thread(slot)
        self._watchdog = threading.Thread(target=self._watch, name="asr-watchdog", daemon=True)
        self._watchdog.start()

    # -- submitting ----------------------------------------------------------------------------

    def submit_final(self, job: AsrJob) -> None:
        with self._lock:
            self._finals.append(job)
            self._pump()

    def submit_interim(self, job: AsrJob) -> bool:
        """Queue an interim unless one for the stream is still
        running (or interims are shed); False when skipped."""
        stream = job.utterance.stream_id
        with self._lock:
            self._interim_askers[stream] = time.monotonic()
            if self._shed:
                self.interims_shed += 1
                return False
            if stream in self._interim_running:
                self.interims_skipped += 1
                return False
            if stream in self._interims:
                self.interims_skipped += 1
            self._interims[stream] = job
            self._pump()
            return True

    def interim_share_for(self, wanted: float) -> float:
        """The share of one worker a stream's interims may take now: its own `wanted`, or
        its equal part of the pool's interim budget among the streams asking for
        interims, whichever is less."""
        now = time.monotonic()
        with self._lock:
            for stream, asked in list(self._interim_askers.items()):
                if now - asked > ACTIVE_S:
                    del self._interim_askers[stream]
            return min(wanted, self.interim_slots / max(1, len(self._interim_askers)))

    @property
    def shed_interims(self) -> bool:
        return self._shed

    @shed_interims.setter
    def shed_interims(self, shed: bool) -> None:
        """Stop (or resume) interims: queued ones are dropped; finals are untouched."""
        with self._lock:
            self._shed = shed
            if shed:
                self.interims_shed += len(self._interims)
                self._interims.clear()

    def withdraw(self, stream_id: str, *, finals: bool = True) -> None:
        """The stream stopped: drop its queued interim, and with `finals` its queued
        finals (reported `Cancelled`); the results of its running calls of those kinds
        are thrown away when they end."""
        def withdrawn(job: AsrJob) -> bool:
            return job.utterance.stream_id == stream_id and (finals or not job.request.final)

        with self._lock:
            dropped = self._withdraw_queued(stream_id, withdrawn)
            for slot in self._slots:
                for job in slot.running or []:
                    if withdrawn(job):
                        job.withdrawn = True
            self._pump()  # a worker whose handed-over jobs were all taken back is free again
        for job in dropped:
            _report(job, None, Cancelled())

    def drop_interim(self, stream_id: str) -> None:
        """Forget a queued interim (its utterance just ended)."""
        with self._lock:
            self._interims.pop(stream_id, None)

    def depth(self) -> tuple[int, int]:
        """Queued finals and interims."""
        with self._lock:
            return len(self._finals), len(self._interims)

    def interim_cost(self) -> float | None:
        """The usual worker-seconds of one stream's interim
        (its share of a call; None before the first)."""
        with self._lock:
            return self._interim_job

    def describe_workers(self) -> list[dict[str, Any]]:
        """Each worker's state (idle, busy, down), calls,
        failures, hangs, restarts and last error."""
        now = time.monotonic()
        with self._lock:
            return [slot.describe(now) for slot in self._slots]

    def shutdown(self) -> None:
        """Finish the running calls; queued and held jobs are
        dropped, as queued ones always were."""
        with self._lock:
            self._closed = True
            self._closing.set()
            if self._timer is not None:
                self._timer.cancel()
            self._lock.notify_all()
            threads = [slot.thread for slot in self._slots if slot.thread is not None]
        for thread in threads:
            thread.join()
        self._watchdog.join()

    # -- scheduling (lock held) ----------------------------------------------------------------

    def _withdraw_queued(self, stream_id: str, withdrawn: Callable[[AsrJob], bool]) -> list[AsrJob]:
        """Take the `withdrawn` jobs not yet started out (the stream's interim, its finals when
        asked): the finals, to report `Cancelled` (an interim dropped is not reported, as when a
        newer one replaces it)."""
        taken = [self._interims.pop(stream_id)] if stream_id in self._interims else []
        taken += [job for job in self._finals if withdrawn(job)]
        self._finals = deque(job for job in self._finals if not withdrawn(job))
        for slot in self._slots:
            given = [job for job in slot.given or [] if withdrawn(job)]
            if given:
                slot.given = [job for job in slot.given or [] if job not in given] or None
                taken += given
        if any(not job.request.final for job in taken):
            # the one handed over (a running one is not taken)
            self._interim_running.discard(stream_id)
        self.cancelled += len(taken)
        return [job for job in taken if job.request.final]

    def _pump(self) -> None:
        """Hand queued jobs to free workers."""
        while not self._closed:
            free = [slot for slot in self._slots if slot.free]
            if not free:
                return
            if self._finals:
                wait = self._finals[0].t_submitted + self.batch_wait - time.monotonic()
                if len(self._finals) < self.batch_size and wait > 0:
                    self._wake_in(wait)
                    return  # held for a fuller batch: no interim jumps in meanwhile
                calls = min(len(free), len(self._finals))  # share out: no free worker idles
                size = min(self.batch_size, -(-len(self._finals) // calls))
                given = 0
                for slot in free:
                    if given == calls or not self._finals:
                        break
                    jobs = self._take(slot, size)
                    if jobs:
                        self.batches[len(jobs)] += 1
                        self._give(slot, jobs)
                        given += 1
                if given:
                    continue
                # only retries wait, for another worker
                free = [slot for slot in self._slots if slot.free]
            if not self._interims or self._shed or self._interim_workers() >= self.interim_slots:
                return
            oldest = sorted(self._interims, key=lambda s: self._interims[s].t_submitted)
            streams = oldest[: self.interim_batch]
            self._interim_running.update(streams)
            self._give(free[0], [self._interims.pop(stream) for stream in streams])

    def _interim_workers(self) -> int:
        """Workers given or running an interim call."""
        calls = [slot.given or slot.running for slot in self._slots]
        return sum(1 for jobs in calls if jobs and not jobs[0].request.final)

    def _take(self, slot: Worker, size: int) -> list[AsrJob]:
        """Up to `size` queued finals for `slot`, oldest first, leaving a retry to another worker
        while another one serves."""
        others = any(s.thread is not None for s in self._slots if s is not slot)
        jobs = [job for job in self._finals if not (others and job.avoid == slot.index)][:size]
        taken = {id(job) for job in jobs}
        self._finals = deque(job for job in self._finals if id(job) not in taken)
        return jobs

    def _give(self, slot: Worker, jobs: list[AsrJob]) -> None:
        slot.given = jobs
        self._lock.notify_all()

    def _wake_in(self, seconds: float) -> None:
        """Pump again in `seconds`, when the oldest held final is due."""
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(seconds, self._wake)
            self._timer.daemon = True
            self._timer.start()

    def _wake(self) -> None:
        with self._lock:
            self._timer = None
            self._pump()

    # -- workers -------------------------------------------------------------------------------

    def _start_thread(self, slot: Worker) -> None:
        """Serve `slot` with a new thread, unless as many
        hung threads as workers still run (lock held)."""
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        slot.generation += 1
        slot.thread = None
        if len(self._abandoned) >= self.workers or self._closed:
            return
        slot.thread = threading.Thread(
            target=self._work, args=(slot, slot.generation), name=f"asr-{slot.index}", daemon=True
        )
        slot.thread.start()

    def _work(self, slot: Worker, generation: int) -> None:
        error: BaseException | None = None
        try:
            while True:
                with self._lock:
                    while slot.generation == generation and slot.given is None and not self._closed:
                        self._lock.wait()
                    if slot.generation != generation or slot.given is None:
                        return
                    jobs, slot.given = slot.given, None
                    slot.running, slot.started = jobs, time.monotonic()
                outcomes = self._call(jobs)
                self._finish(slot, generation, jobs, outcomes)
        except BaseException as failure:  # noqa: BLE001 - a dying thread is replaced, whatever killed it
            error = failure
        finally:
            self._thread_ended(slot, generation, error)

    def _call(self, jobs: list[AsrJob]) -> list[Outcome]:
        try:
            if len(jobs) > 1 or (self.batch_size > 1 and jobs[0].request.final):
                # a lone final: it may do less
                return list(self.backend.transcribe_batch([job.request for job in jobs]))  # type: ignore[attr-defined]
            return [self.backend.transcribe(jobs[0].request)]
        except Exception as failure:  # a crash in one call must not take the streams down
            return [failure] * len(jobs)

    def _finish(
        self, slot: Worker, generation: int, jobs: list[AsrJob], outcomes: list[Outcome]
    ) -> None:
        finished = time.monotonic()
        with self._lock:
            if slot.generation != generation:
                return  # declared hung meanwhile: its jobs were retried or failed already
            started, slot.running, slot.started = slot.started, None, 0.0
            slot.calls += 1
            self._account(jobs, started, finished)
            final = jobs[0].request.final
            self._expect(final, finished - started, len(jobs))
            failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
            if failed is not None:
                slot.failures += 1
                slot.last_error = f"{type(failed).__name__}: {failed}"[:300]
            reports = self._settle(slot, jobs, outcomes)
            self._pump()
        _report_all(reports)

    def _expect(self, final: bool, seconds: float, jobs: int) -> None:
        """Follow the usual length of a call of each kind (the watchdog's measure) and of one
        interim job (what a stream's interim costs when several share a call)."""
        self._expected[final] = 0.8 * self._expected.get(final, seconds) + 0.2 * seconds
        if not final:
            self._interim_job = 0.8 * (self._interim_job or seconds / jobs) + 0.2 * seconds / jobs

    def _account(self, jobs: list[AsrJob], started: float, finished: float) -> None:
        seconds = finished - started
        self.busy_seconds += seconds
        if jobs[0].request.final:
            self.final_seconds += seconds
        else:
            self.interim_seconds += seconds
            self.interim_calls += 1
        for job in jobs:
            job.t_started, job.t_finished, job.shared_by = started, finished, len(jobs)
            job.spent += seconds / len(jobs)
            if not job.request.final:
                self._interim_running.discard(job.utterance.stream_id)

    def _settle(
        self, slot: Worker, jobs: list[AsrJob], outcomes: list[Outcome]
    ) -> list[tuple[AsrJob, Outcome]]:
        """Requeue each final that failed for the first time (ahead of the others,
        avoiding this worker); the rest are reported, a withdrawn job's as
        `Cancelled` whatever came (lock held)."""
        reports: list[tuple[AsrJob, Outcome]] = []
        retry = []
        for job, outcome in zip(jobs, outcomes):
            if job.withdrawn:
                self.discarded += 1
                reports.append((job, Cancelled()))
            elif isinstance(outcome, BaseException) and job.request.final and job.attempts == 0:
                job.attempts, job.avoid = 1, slot.index
                retry.append(job)
            else:
                reports.append((job, outcome))
        self.retries += len(retry)
        self._finals.extendleft(reversed(retry))
        return reports

    def _thread_ended(self, slot: Worker, generation: int, error: BaseException | None) -> None:
        """A worker thread returned: normal at shutdown or
        once abandoned; otherwise it died and is replaced."""
        reports: list[tuple[AsrJob, Outcome]] = []
        with self._lock:
            if slot.generation == generation and not self._closed:
                slot.failures += 1
                slot.restarts += 1
                slot.last_error = f"worker thread died: {type(error).__name__}: {error}"[:300]
                log.error("ASR worker %d died (%s): replaced", slot.index, slot.last_error)
                lost = (slot.running or []) + (slot.given or [])
                slot.running = slot.given = None
                for job in lost:
                    if not job.request.final:
                        self._interim_running.discard(job.utterance.stream_id)
                reports = self._settle(slot, lost, [RuntimeError(slot.last_error)] * len(lost))
                self._start_thread(slot)
            self._revive()
            self._pump()
        _report_all(reports)

    def _revive(self) -> None:
        """Serve again the slots left without a thread while
        too many hung threads ran (lock held)."""
        for slot in self._slots:
            if slot.thread is None and not self._closed:
                slot.restarts += 1
                self._start_thread(slot)

    def _watch(self) -> None:
        """Declare hung the calls that run far past their expected time."""
        while not self._closing.wait(min(WATCH_S, (self.hung_after_s or WATCH_S * 4) / 4)):
            with self._lock:
                now = time.monotonic()
                hung = [
                    slot
                    for slot in self._slots
                    if slot.running and now - slot.started > self._limit(slot.running)
                ]
                reports = [report for slot in hung for report in self._declare_hung(slot, now)]
                if hung:
                    self._pump()
            _report_all(reports)

    def _limit(self, jobs: list[AsrJob]) -> float:
        if self.hung_after_s is not None:
            return self.hung_after_s
        return max(HUNG_MIN_S, HUNG_FACTOR * self._expected.get(jobs[0].request.final, 0.0))

    def _declare_hung(self, slot: Worker, now: float) -> list[tuple[AsrJob, Outcome]]:
        """Abandon the slot's thread, replace it and retry or fail its jobs (lock held)."""
        jobs, started = slot.running or [], slot.started
        slot.running, slot.started = None, 0.0
        slot.hangs += 1
        slot.restarts += 1
        expected = self._expected.get(jobs[0].request.final)
        hung = Hung(
            f"an ASR call ran {now - started:.1f} s"
            + (f" (usually {expected:.2f} s)" if expected else "")
        )
        log.error("ASR worker %d: %s; replaced", slot.index, hung)
        slot.last_error = f"Hung: {hung}"
        self._account(jobs, started, now)
        if slot.thread is not None:
            self._abandoned.append(slot.thread)
        self._start_thread(slot)
        return self._settle(slot, jobs, [hung] * len(jobs))


def _report(job: AsrJob, result: AsrResult | None, error: BaseException | None) -> None:
    try:
        job.on_done(job, result, error)
    except Exception:  # a broken callback must not kill the worker that ran the job
        log.exception("an ASR callback failed")


def _report_all(reports: list[tuple[AsrJob, Outcome]]) -> None:
    for job, outcome in reports:
        if isinstance(outcome, BaseException):
            _report(job, None, outcome)
        else:
            _report(job, outcome, None)
