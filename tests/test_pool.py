"""The ASR pool's scheduling rules, with a backend that blocks until released (fakes only here:
the rules are about queues and order, not recognition)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from livecap.asr.base import AsrRequest, AsrResult, AsrSegment
from livecap.asr.pool import AsrJob, AsrPool, Cancelled
from livecap.messages import Utterance


class GateBackend:
    """Records the order jobs start in; each call waits until the test opens the gate."""

    name, device, compute_type, multilingual = "gate", "cpu", "int8", False

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = threading.Event()
        self._lock = threading.Lock()

    def transcribe(self, request: AsrRequest) -> AsrResult:
        with self._lock:
            self.started.append(str(request.samples[0]))
        self.gate.wait(5)
        return AsrResult((AsrSegment(0.0, 1.0, "x"),), "en", 1.0)


def job(stream: str, label: float, *, final: bool, done: list | None = None) -> AsrJob:
    samples = np.full(16, label, dtype=np.float32)
    utterance = Utterance(stream, 0, 0.0, 1.0, samples, final, 0.0, 0.0)
    return AsrJob(utterance, AsrRequest(samples, final=final), lambda j, r, e: (done if done is not None else []).append((j, r, e)))


def wait_for(condition, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


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


def test_newer_interim_replaces_a_queued_one_of_its_stream_only(gated: tuple[AsrPool, GateBackend]) -> None:
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
    pool = AsrPool(backend, workers=2)
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


def test_cancel_touches_only_its_own_stream(gated: tuple[AsrPool, GateBackend]) -> None:
    pool, backend = gated
    done: list = []
    pool.submit_final(job("s1", 1, final=True, done=done))
    wait_for(lambda: backend.started == ["1.0"])
    pool.submit_final(job("s1", 2, final=True, done=done))
    pool.submit_final(job("s2", 3, final=True, done=done))
    pool.submit_final(job("s1", 4, final=True, done=done))
    pool.cancel_finals("s1")
    cancelled = [j.request.samples[0] for j, _, e in done if isinstance(e, Cancelled)]
    assert cancelled == [2.0, 4.0]
    backend.gate.set()
    wait_for(lambda: len(done) == 4)
    assert backend.started == ["1.0", "3.0"]  # s2's final still ran


def test_a_failing_job_fails_only_itself() -> None:
    class Flaky(GateBackend):
        def transcribe(self, request: AsrRequest) -> AsrResult:
            if request.samples[0] == 2:
                raise RuntimeError("boom")
            return AsrResult((AsrSegment(0.0, 1.0, str(request.samples[0])),), "en", 1.0)

    pool = AsrPool(Flaky(), workers=2)
    done: list = []
    try:
        for label in (1, 2, 3):
            pool.submit_final(job("s1", label, final=True, done=done))
        wait_for(lambda: len(done) == 3)
    finally:
        pool.shutdown()
    errors = {j.request.samples[0]: e for j, _, e in done}
    assert isinstance(errors[2.0], RuntimeError) and errors[1.0] is None and errors[3.0] is None
