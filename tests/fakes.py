"""Fakes for the unit tests of queues, ordering and faults, never of recognition: ASR
backends that number, hold up or stall their calls, a source faster than real time, a
translator that fails on cue, and a harness that drives streams to their end. One place, so
each test says only what differs."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from livecap.asr.base import AsrRequest, AsrResult, AsrSegment
from livecap.asr.pool import AsrJob
from livecap.messages import SAMPLE_RATE, StreamEnd, Utterance
from livecap.pipeline.stream import Stream
from livecap.sources.queue import CaptureQueue, RawBlock
from livecap.translators.base import TranslationRequest


class FakeBackend:
    """An ASR backend that answers after a delay drawn from `delays` (seeded: uneven delays finish
    later jobs first, the same way each run). Final number n (from 0) says `texts(n)`, one segment
    each, spread over its audio; an interim says "interim words". `finals` keeps every final's
    segment texts in the order the calls started, to find each one among the captions. With `hold`,
    finals also wait until it is set (5 s at most, so that a failing test ends)."""

    name, device, compute_type, multilingual = "fake", "cpu", "int8", True

    def __init__(
        self,
        delays: Sequence[float] = (0.0,),
        texts: Callable[[int], Sequence[str]] = lambda n: (str(n),),
        language: str = "en",
        seed: int = 0,
        hold: threading.Event | None = None,
    ) -> None:
        self.delays, self.texts, self.language, self.hold = delays, texts, language, hold
        self.finals: list[str] = []
        self._calls = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def transcribe(self, request: AsrRequest) -> AsrResult:
        with self._lock:
            delay = self._random.choice(self.delays)
            texts: Sequence[str] = ("interim words",)
            if request.final:
                texts = self.texts(self._calls)
                self._calls += 1
                self.finals += texts
        if request.final and self.hold is not None:
            self.hold.wait(5)
        time.sleep(delay)
        step = len(request.samples) / SAMPLE_RATE / len(texts)
        segments = tuple(AsrSegment(i * step, (i + 1) * step, text) for i, text in enumerate(texts))
        return AsrResult(segments, self.language, 1.0)


class GateBackend:
    """Records the label (first sample) of each job as it starts; each call waits until the test
    opens `gate` (5 s at most, so that a failing test ends)."""

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
    """A pool job whose audio is 16 samples of `label`; its outcome is appended to `done`."""
    samples = np.full(16, label, dtype=np.float32)
    utterance = Utterance(stream, 0, 0.0, 1.0, samples, final, 0.0, 0.0)
    return AsrJob(
        utterance,
        AsrRequest(samples, final=final),
        lambda j, r, e: (done if done is not None else []).append((j, r, e)),
    )


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll `condition` until it holds; the timeout only ends a test that would hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class FastSource:
    """A live source that delivers 100 ms blocks `speed` times faster than real time."""

    name, rate, duration, block_s = "fast", SAMPLE_RATE, None, 0.1

    def __init__(self, samples: np.ndarray, speed: float = 10.0) -> None:
        self._blocks = np.array_split(samples, max(1, len(samples) // (SAMPLE_RATE // 10)))
        self._pause = self.block_s / speed
        self._stop = threading.Event()

    def start(self, sink: CaptureQueue) -> None:
        threading.Thread(target=self._run, args=(sink,), daemon=True).start()

    def _run(self, sink: CaptureQueue) -> None:
        for block in self._blocks:
            if self._stop.wait(self._pause):
                break
            sink.offer(RawBlock(block, time.monotonic()))
        sink.end()

    def stop(self) -> None:
        self._stop.set()


class FakeTranslator:
    """Prefixes the target language after a short random delay; the caption `failing` fails.
    Called from several translation threads at once, in no particular order."""

    name = "fake"

    def __init__(self, failing: str, delays: Sequence[float] = (0.0, 0.005, 0.01)) -> None:
        self.failing, self.delays = failing, delays
        self.seen: list[str] = []

    def translate(self, request: TranslationRequest) -> str:
        assert request.samples is not None and len(request.samples) > 0
        self.seen.append(request.text)
        time.sleep(random.choice(self.delays))
        if request.text == self.failing:
            raise RuntimeError("translation backend broke")
        return f"{request.target_language}: {request.text}"


def drive(
    streams: Sequence[Stream], on_poll: Callable[[Stream], None] = lambda stream: None
) -> dict[str, list]:
    """Start `streams` and take their events until each has ended; `on_poll` sees each stream after
    each poll (to sample its queues). The events per stream id, StreamEnd last."""
    events: dict[str, list] = {s.stream_id: [] for s in streams}
    for stream in streams:
        stream.start()
    while not all(e and isinstance(e[-1], StreamEnd) for e in events.values()):
        for stream in streams:
            if events[stream.stream_id] and isinstance(events[stream.stream_id][-1], StreamEnd):
                continue
            event = stream.next_event(timeout=0.02)
            on_poll(stream)
            if event is not None:
                events[stream.stream_id].append(event)
    return events
