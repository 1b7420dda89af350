"""The ASR pool's scheduling rules, with a backend that blocks until released (the fakes of
`fakes`: the rules are about queues and order, not recognition)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fakes import GateBackend, job, wait_for
from livecap.asr.base import AsrRequest, AsrResult, AsrSegment
from livecap.asr.pool import INTERIM_BATCH, AsrPool, Cancelled, Hung


@pytest.fixture
def gated() -> tuple[AsrPool, GateBackend]:
    backend = GateBackend()
    pool = AsrPool(backend, workers=1)
    yield pool, backend
    backend.gate.set()
    pool.shutdown()


def test_finals_go_before_interims(gated: tuple[AsrPool, GateBackend]) -> None:
    pool, backend = gated
    pool.submit_final(job("a", 1, final=True))  # occupies the only worker
    wait_for(lambda: backend.started == ["1.0"])
    pool.submit_interim(job("b", 2, final=False))
    pool.submit_final(job("c", 3, final=True))
    backend.gate.set()
    wait_for(lambda: len(backend.started) == 3)
    assert backend.started == ["1.0", "3.0", "2.0"]


def test_finals_run_oldest_first_across_streams(gated: tuple[AsrPool, GateBackend]) -> None:
    pool, backend = gated
    pool.submit_final(job("a", 1, final=True))
    wait_for(lambda: backend.started == ["1.0"])
    for stream, label in (("b", 2), ("a", 3), ("c", 4)):
        pool.submit_final(job(stream, label, final=True))
    backend.gate.set()
    wait_for(lambda: len(backend.started) == 4)
    assert backend.started == ["1.0", "2.0", "3.0", "4.0"]


def test_newer_interim_replaces_a_queued_one_of_its_stream_only(
    gated: tuple[AsrPool, GateBackend],
) -> None:
    pool, backend = gated
    pool.submit_final(job("a", 1, final=True))
    wait_for(lambda: backend.started == ["1.0"])
    assert pool.submit_interim(job("s1", 2, final=False))
    assert pool.submit_interim(job("s2", 3, final=False))
    assert pool.submit_interim(job("s1", 4, final=False))  # replaces 2, not 3
    assert pool.depth() == (0, 2)
    backend.gate.set()
    wait_for(lambda: len(backend.started) == 3)
    assert sorted(backend.started[1:]) == ["3.0", "4.0"]


def test_one_interim_runs_per_stream() -> None:
    backend = GateBackend()
    pool = AsrPool(backend, workers=2, interim_share=1.0)  # both workers may run interims
    try:
        assert pool.submit_interim(job("s1", 1, final=False))
        wait_for(lambda: backend.started == ["1.0"])
        assert not pool.submit_interim(job("s1", 2, final=False))  # s1's interim is still running
        assert pool.submit_interim(job("s2", 3, final=False))  # another stream is not held back
        wait_for(lambda: len(backend.started) == 2)
        assert backend.started == ["1.0", "3.0"]
        assert pool.interims_skipped == 1
    finally:
        backend.gate.set()
        pool.shutdown()


def reported(done: list) -> dict[float, str]:
    """Each reported job's label: "cancelled", or the text it was transcribed as."""
    return {
        j.request.samples[0]: "cancelled" if isinstance(e, Cancelled) else r.segments[0].text
        for j, r, e in done
    }


def behind_a_running_final(
    pool: AsrPool, backend: GateBackend, queued: list[tuple[str, int, bool]]
) -> list:
    """s1's final 1 occupies the only worker, then the `queued` jobs (stream, label, final) are
    submitted; the list their outcomes are reported to."""
    done: list = []
    pool.submit_final(job("s1", 1, final=True, done=done))
    wait_for(lambda: backend.started == ["1.0"])
    for stream, label, final in queued:
        submit = pool.submit_final if final else pool.submit_interim
        submit(job(stream, label, final=final, done=done))
    return done


def test_a_stopped_stream_gives_back_its_waiting_work_and_its_running_result(
    gated: tuple[AsrPool, GateBackend],
) -> None:
    """Withdrawn: s1's queued final and interim are dropped and the result of its call already
    running is thrown away; s2's jobs keep their places and order."""
    pool, backend = gated
    queued = [("s2", 2, True), ("s1", 3, True), ("s1", 4, False), ("s2", 5, False), ("s2", 6, True)]
    done = behind_a_running_final(pool, backend, queued)
    pool.withdraw("s1")
    assert reported(done) == {3.0: "cancelled"}  # at once, before any call ends
    backend.gate.set()
    wait_for(lambda: len(done) == 5)
    assert backend.started == ["1.0", "2.0", "6.0", "5.0"]  # of s1 only the call already running
    assert reported(done) == {1.0: "cancelled", 2.0: "x", 3.0: "cancelled", 5.0: "x", 6.0: "x"}
    assert (pool.cancelled, pool.discarded) == (2, 1)


def test_a_running_batch_keeps_the_results_of_streams_that_did_not_stop() -> None:
    backend = BatchGate()
    pool = AsrPool(backend, workers=1, batch_size=3, batch_wait_ms=60_000)  # full: never held
    done: list = []
    try:
        for stream, label in (("s1", 1), ("s2", 2), ("s1", 3)):
            pool.submit_final(job(stream, label, final=True, done=done))
        wait_for(lambda: backend.calls == [["1.0", "2.0", "3.0"]])
        pool.withdraw("s1")
        backend.gate.set()
        wait_for(lambda: len(done) == 3)
    finally:
        backend.gate.set()
        pool.shutdown()
    assert reported(done) == {1.0: "cancelled", 2.0: "2.0", 3.0: "cancelled"}
    assert (pool.cancelled, pool.discarded) == (0, 2)


def test_a_stopped_live_stream_gives_back_its_interims_never_its_finals(
    gated: tuple[AsrPool, GateBackend],
) -> None:
    pool, backend = gated
    done = behind_a_running_final(pool, backend, [("s1", 2, False), ("s1", 3, True)])
    pool.withdraw("s1", finals=False)  # live: what was heard is still transcribed
    backend.gate.set()
    wait_for(lambda: len(done) == 2)
    assert backend.started == ["1.0", "3.0"]
    assert reported(done) == {1.0: "x", 3.0: "x"} and pool.cancelled == 1


def test_a_failing_job_fails_only_itself() -> None:
    class Flaky(GateBackend):
        def transcribe(self, request: AsrRequest) -> AsrResult:
            if request.samples[0] == 2:
                raise RuntimeError("boom")
            return AsrResult((AsrSegment(0.0, 1.0, str(request.samples[0])),), "en", 1.0)

    pool = AsrPool(Flaky(), workers=2)
    done: list = []
    try:
        finals_done(pool, done)
    finally:
        pool.shutdown()
    errors = {j.request.samples[0]: e for j, _, e in done}
    assert isinstance(errors[2.0], RuntimeError) and errors[1.0] is None and errors[3.0] is None


# -- batching: several finals in one backend call -------------------------------------------------


class BatchGate(GateBackend):
    """A GateBackend that also takes batches, recording each call's labels; label 13 fails alone."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def transcribe(self, request: AsrRequest) -> AsrResult:
        self.calls.append([str(request.samples[0])])
        return super().transcribe(request)

    def transcribe_batch(self, requests: list[AsrRequest]) -> list[AsrResult | Exception]:
        labels = [str(r.samples[0]) for r in requests]
        with self._lock:
            self.calls.append(labels)
            self.started.extend(labels)
        self.gate.wait(5)
        return [
            RuntimeError("bad item")
            if label == "13.0"
            else AsrResult((AsrSegment(0.0, 1.0, label),), "en", 1.0)
            for label in labels
        ]


@pytest.fixture
def batching() -> tuple[AsrPool, BatchGate]:
    backend = BatchGate()
    pool = AsrPool(backend, workers=1, batch_size=3, batch_wait_ms=20)
    yield pool, backend
    backend.gate.set()
    pool.shutdown()


def test_waiting_finals_run_as_one_call_oldest_first_across_streams(
    batching: tuple[AsrPool, BatchGate],
) -> None:
    pool, backend = batching
    pool.submit_final(job("a", 1, final=True))  # held 20 ms, then runs alone: no other final came
    wait_for(lambda: backend.started == ["1.0"])
    for stream, label in (("b", 2), ("a", 3), ("c", 4), ("b", 5)):
        pool.submit_final(job(stream, label, final=True))
    backend.gate.set()
    wait_for(lambda: len(backend.started) == 5)
    assert backend.calls == [["1.0"], ["2.0", "3.0", "4.0"], ["5.0"]]
    assert pool.batches == {1: 2, 3: 1}


def test_a_lone_final_is_held_at_most_the_batch_wait(batching: tuple[AsrPool, BatchGate]) -> None:
    pool, backend = batching
    backend.gate.set()
    done: list = []
    pool.submit_final(job("a", 1, final=True, done=done))
    wait_for(lambda: len(done) == 1)
    held = done[0][0].t_started - done[0][0].t_submitted
    assert 0.015 <= held < 0.5  # 20 ms by the pool's own clock; the margin is for a loaded machine


def test_a_full_batch_is_not_held(batching: tuple[AsrPool, BatchGate]) -> None:
    pool, backend = batching
    pool.submit_final(job("a", 1, final=True))
    wait_for(lambda: backend.started == ["1.0"])
    jobs = [job("a", label, final=True) for label in (2, 3, 4)]
    for queued in jobs:
        pool.submit_final(queued)
    backend.gate.set()
    wait_for(lambda: len(backend.started) == 4)
    assert backend.calls[1] == ["2.0", "3.0", "4.0"]
    assert all(
        j.shared_by == 3 and j.cost == pytest.approx((j.t_finished - j.t_started) / 3) for j in jobs
    )


def test_no_interim_starts_while_finals_are_held() -> None:
    backend = BatchGate()
    backend.gate.set()
    pool = AsrPool(backend, workers=1, batch_size=4, batch_wait_ms=100)
    try:
        pool.submit_final(job("a", 1, final=True))
        assert pool.submit_interim(job("b", 2, final=False))
        wait_for(lambda: len(backend.started) == 2)
        # the held final first, the interim alone after it
        assert backend.calls == [["1.0"], ["2.0"]]
    finally:
        pool.shutdown()


def test_interims_of_several_streams_share_a_call_oldest_first() -> None:
    backend = BatchGate()
    pool = AsrPool(backend, workers=1)  # finals unbatched (batch_size 1); interims share calls
    try:
        pool.submit_final(job("x", 0, final=True))
        wait_for(lambda: backend.started == ["0.0"])
        streams = [f"s{n}" for n in range(INTERIM_BATCH + 1)]
        interims = [job(stream, n + 1, final=False) for n, stream in enumerate(streams)]
        for interim in interims:
            assert pool.submit_interim(interim)
        backend.gate.set()
        wait_for(lambda: len(backend.started) == INTERIM_BATCH + 2)
        labels = [f"{n + 1}.0" for n in range(INTERIM_BATCH + 1)]
        assert backend.calls[1:] == [labels[:INTERIM_BATCH], labels[INTERIM_BATCH:]]
        wait_for(lambda: all(j.t_finished for j in interims))
        first = interims[0]
        call = first.t_finished - first.t_started
        assert first.shared_by == INTERIM_BATCH
        assert first.cost == pytest.approx(call / INTERIM_BATCH)
        cost = pool.interim_cost()
        assert cost is not None and cost <= max(j.cost for j in interims)
    finally:
        pool.shutdown()


def test_a_failing_job_in_a_batch_fails_only_itself(batching: tuple[AsrPool, BatchGate]) -> None:
    pool, backend = batching
    done: list = []
    pool.submit_final(job("a", 1, final=True, done=done))
    wait_for(lambda: backend.started == ["1.0"])
    for stream, label in (("a", 12), ("b", 13), ("c", 14)):
        pool.submit_final(job(stream, label, final=True, done=done))
    backend.gate.set()
    wait_for(lambda: len(done) == 4)
    outcome = {j.request.samples[0]: (r, e) for j, r, e in done}
    assert isinstance(outcome[13.0][1], RuntimeError) and outcome[13.0][0] is None
    assert [outcome[label][0].segments[0].text for label in (12.0, 14.0)] == ["12.0", "14.0"]
    assert backend.calls[1] == ["12.0", "13.0", "14.0"]  # they did share the call


def test_cancel_withdraws_held_finals_of_its_stream_only(
    batching: tuple[AsrPool, BatchGate],
) -> None:
    pool, backend = batching
    done: list = []
    pool.submit_final(job("a", 1, final=True, done=done))
    wait_for(lambda: backend.started == ["1.0"])
    for stream, label in (("s1", 2), ("s2", 3), ("s1", 4)):
        pool.submit_final(job(stream, label, final=True, done=done))
    pool.withdraw("s1")
    backend.gate.set()
    wait_for(lambda: len(done) == 4)
    assert backend.calls == [["1.0"], ["3.0"]]


def test_a_backend_without_batches_gets_one_job_a_call() -> None:
    backend = GateBackend()
    pool = AsrPool(backend, workers=1, batch_size=8)
    try:
        assert pool.batch_size == 1
        backend.gate.set()
        done: list = []
        for label in (1, 2, 3):
            pool.submit_final(job("a", label, final=True, done=done))
        wait_for(lambda: len(done) == 3)
        assert backend.started == ["1.0", "2.0", "3.0"]
    finally:
        pool.shutdown()


def test_released_finals_are_shared_among_free_workers() -> None:
    backend = BatchGate()
    pool = AsrPool(backend, workers=2, batch_size=4, batch_wait_ms=5000)
    try:
        for stream, label in (("a", 1), ("b", 2), ("c", 3), ("d", 4)):
            pool.submit_final(job(stream, label, final=True))  # held until the fourth fills a batch
        wait_for(lambda: len(backend.started) == 4)
        assert sorted(backend.calls) == [["1.0", "2.0"], ["3.0", "4.0"]]
    finally:
        backend.gate.set()
        pool.shutdown()


# -- the interim budget of the whole pool ----------------------------------------------------------


def test_interims_of_all_streams_leave_a_worker_for_finals() -> None:
    backend = GateBackend()
    pool = AsrPool(backend, workers=2, interim_share=0.5)  # one worker for interims at most
    try:
        assert pool.interim_slots == 1
        for stream, label in (("s1", 1), ("s2", 2), ("s3", 3)):
            assert pool.submit_interim(job(stream, label, final=False))
        wait_for(lambda: backend.started == ["1.0"])
        # the other worker was kept free: it starts at once
        pool.submit_final(job("s4", 4, final=True))
        wait_for(lambda: len(backend.started) == 2)
        assert backend.started == ["1.0", "4.0"] and pool.depth() == (0, 2)
        backend.gate.set()
        wait_for(lambda: len(backend.started) == 4)
        assert backend.started[2:] == ["2.0", "3.0"]  # the waiting interims, oldest first
    finally:
        backend.gate.set()
        pool.shutdown()


def test_each_stream_gets_an_equal_part_of_the_interim_budget() -> None:
    backend = GateBackend()
    backend.gate.set()
    pool = AsrPool(backend, workers=4, interim_share=0.5)  # two workers' worth of interims
    try:
        assert pool.interim_share_for(0.4) == 0.4  # nobody else asks: the stream's own share
        pool.submit_interim(job("s1", 1, final=False))
        assert pool.interim_share_for(0.4) == 0.4
        for index in range(2, 9):
            pool.submit_interim(job(f"s{index}", index, final=False))
        # eight streams share two workers
        assert pool.interim_share_for(0.4) == pytest.approx(2 / 8)
    finally:
        pool.shutdown()


def test_shed_interims_stops_interims_never_finals(gated: tuple[AsrPool, GateBackend]) -> None:
    pool, backend = gated
    done: list = []
    pool.submit_final(job("a", 1, final=True, done=done))
    wait_for(lambda: backend.started == ["1.0"])
    assert pool.submit_interim(job("b", 2, final=False, done=done))
    pool.shed_interims = True  # the queued interim is dropped, new ones refused
    assert not pool.submit_interim(job("c", 3, final=False, done=done))
    pool.submit_final(job("d", 4, final=True, done=done))
    backend.gate.set()
    wait_for(lambda: len(done) == 2)
    assert backend.started == ["1.0", "4.0"] and pool.interims_shed == 2
    pool.shed_interims = False
    assert pool.submit_interim(job("c", 5, final=False, done=done))
    wait_for(lambda: len(done) == 3)


# -- workers that heal -----------------------------------------------------------------------------


class FailOn(GateBackend):
    """Fails the job labelled `label`: raises `error` on its first `times` calls (a test wrapper
    around the gate, not a switch in the product); other jobs pass."""

    def __init__(
        self, label: float, error: BaseException, times: int = 1, hang: bool = False
    ) -> None:
        super().__init__()
        self.gate.set()
        self.label, self.error, self.left, self.hang = label, error, times, hang
        self.release = threading.Event()
        self.attempts: list[tuple[float, str]] = []  # (label, worker thread) of every call

    def transcribe(self, request: AsrRequest) -> AsrResult:
        with self._lock:
            self.attempts.append((float(request.samples[0]), threading.current_thread().name))
            failing = request.samples[0] == self.label and self.left > 0
            self.left -= failing
        if failing and self.hang:
            self.release.wait(30)  # hangs until the test ends
        elif failing:
            raise self.error
        result = super().transcribe(request)
        return AsrResult((AsrSegment(0.0, 1.0, str(request.samples[0])),), result.language, 1.0)


def outcomes(done: list) -> dict[float, tuple]:
    return {j.request.samples[0]: (r.segments[0].text if r else None, e) for j, r, e in done}


def finals_done(
    pool: AsrPool, done: list, labels: tuple[int, ...] = (1, 2, 3), timeout: float = 5.0
) -> None:
    """Submit one final per label on stream s1 and wait until all of them are reported."""
    expected = len(done) + len(labels)
    for label in labels:
        pool.submit_final(job("s1", label, final=True, done=done))
    wait_for(lambda: len(done) == expected, timeout=timeout)


def three_finals(backend: FailOn, workers: int) -> tuple[list, list[dict], int]:
    """Three finals through a pool whose backend fails the second's first call: what was reported,
    the workers as /status describes them, and the retries."""
    pool = AsrPool(backend, workers=workers)
    done: list = []
    try:
        finals_done(pool, done)
        return done, pool.describe_workers(), pool.retries
    finally:
        pool.shutdown()


def test_a_raising_call_is_retried_once_on_another_worker() -> None:
    backend = FailOn(2, RuntimeError("boom"))
    done, workers, retries = three_finals(backend, workers=2)
    # each once, all whole
    assert outcomes(done) == {1.0: ("1.0", None), 2.0: ("2.0", None), 3.0: ("3.0", None)}
    failed = [w for w in workers if w["failures"]]
    assert len(failed) == 1 and failed[0]["last_error"] == "RuntimeError: boom" and retries == 1
    attempts = [worker for label, worker in backend.attempts if label == 2.0]
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # the retry ran on the other worker


def test_a_job_that_fails_twice_fails_alone() -> None:
    backend = FailOn(2, RuntimeError("boom"), times=5)
    pool = AsrPool(backend, workers=2)
    done: list = []
    try:
        finals_done(pool, done)
        finals_done(pool, done, (4, 5))  # the pool goes on
    finally:
        pool.shutdown()
    got = outcomes(done)
    assert got[2.0][0] is None and isinstance(got[2.0][1], RuntimeError)
    assert all(got[label] == (str(label), None) for label in (1.0, 3.0, 4.0, 5.0))
    assert [label for label, _ in backend.attempts].count(2.0) == 2 and pool.retries == 1


def test_a_hung_call_is_detected_its_worker_replaced_and_its_job_retried() -> None:
    backend = FailOn(2, RuntimeError("unused"), hang=True)
    pool = AsrPool(backend, workers=2, hung_after_s=1.0)
    done: list = []
    try:
        finals_done(pool, done, timeout=30)
        workers = pool.describe_workers()
        backend.release.set()  # the abandoned call returns now: its result must be thrown away
        pool.submit_final(job("s1", 4, final=True, done=done))
        wait_for(lambda: len(done) == 4)
        wait_for(lambda: all(w["state"] == "idle" for w in pool.describe_workers()))
    finally:
        backend.release.set()
        pool.shutdown()
    # each exactly once
    assert sorted(j.request.samples[0] for j, _, _ in done) == [1.0, 2.0, 3.0, 4.0]
    assert outcomes(done)[2.0] == ("2.0", None)
    hung = [w for w in workers if w["hangs"]]
    assert (
        len(hung) == 1
        and hung[0]["restarts"] == 1
        and hung[0]["last_error"].startswith("Hung: an ASR call ran")
    )
    assert all(w["state"] != "down" for w in workers)


def test_a_hung_interim_fails_alone_and_frees_its_stream() -> None:
    backend = FailOn(2, RuntimeError("unused"), hang=True)
    pool = AsrPool(backend, workers=2, hung_after_s=1.0)
    done: list = []
    try:
        pool.submit_interim(job("s1", 2, final=False, done=done))
        wait_for(lambda: len(done) == 1, timeout=30)
        assert isinstance(done[0][2], Hung)  # interims are not retried
        assert pool.submit_interim(job("s1", 3, final=False, done=done))  # its stream may ask again
        wait_for(lambda: len(done) == 2)
    finally:
        backend.release.set()
        pool.shutdown()


class Die(BaseException):
    """Kills the worker thread it is raised in (not an
    Exception: nothing in the call catches it)."""


def test_a_dead_worker_thread_is_replaced_and_its_job_retried() -> None:
    backend = FailOn(2, Die("thread killed"))
    done, workers, _ = three_finals(backend, workers=1)
    assert outcomes(done) == {1.0: ("1.0", None), 2.0: ("2.0", None), 3.0: ("3.0", None)}
    assert (
        workers[0]["restarts"] == 1
        and "worker thread died: Die: thread killed" in workers[0]["last_error"]
    )
    assert [label for label, _ in backend.attempts].count(2.0) == 2


class EchoBackend:
    """Says how many samples it was given, after a random delay (unit test only)."""

    name, device, compute_type, multilingual = "echo", "cpu", "int8", False

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def transcribe(self, request: AsrRequest) -> AsrResult:
        time.sleep(random.uniform(0, 0.03))
        with self._lock:
            self.calls += request.final
        seconds = len(request.samples) / 16000
        return AsrResult((AsrSegment(0.0, seconds, str(len(request.samples))),), "en", 1.0)


def test_a_speculative_final_is_used_only_for_its_own_audio(en_clips: list) -> None:
    """Real speech through the real VAD, live, with pauses that end utterances (1 s) and pauses
    that only start a speculative final (0.42 s): each final caption is the decode of exactly its
    own audio, in order, whether its decode was speculative or not; unused ones cost a call."""
    from livecap.config import Config
    from livecap.messages import SAMPLE_RATE, Caption, StreamEnd
    from livecap.pipeline.stream import Stream
    from livecap.sources.file import decode_blocks
    from livecap.sources.push import PushSource

    parts = []
    for clip in sorted(en_clips, key=lambda c: c.duration)[:3]:
        audio = np.concatenate(list(decode_blocks(Path(clip.path))))
        loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
        speech = audio[loud[0] : loud[-1] + 1]
        parts += [
            speech,
            np.zeros(int(0.42 * SAMPLE_RATE), np.float32),
            speech,
            np.zeros(SAMPLE_RATE, np.float32),
        ]
    backend = EchoBackend()
    pool = AsrPool(backend, workers=2)
    # blocks of 0.1 s, as a microphone gives, taken as fast as they come
    source = PushSource(SAMPLE_RATE)
    stream = Stream(source, pool, Config(), stream_id="s", live=True)
    stream.start()
    source.push(np.concatenate(parts))
    source.end()
    events = []
    while not (events and isinstance(events[-1], StreamEnd)):
        event = stream.next_event(timeout=0.05)
        if event is not None:
            events.append(event)
    pool.shutdown()
    captions = [e for e in events if isinstance(e, Caption)]
    assert [c.seq for c in captions] == list(range(len(captions))) and len(captions) >= len(
        parts
    ) // 4
    for caption in captions:  # the decode of this final's own audio, not of a tentative cut
        assert int(caption.text) == round((caption.end - caption.start) * SAMPLE_RATE)
    # tentative finals of the 0.35 s pauses were decoded, unused
    assert backend.calls > len(captions)
