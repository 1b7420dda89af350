"""A stream: one audio source through VAD, the shared ASR pool, reordering and translation.

    source ──RawBlock──▶ CaptureQueue ──▶ VAD thread ──Utterance──▶ AsrPool (shared)
        ──▶ Reorderer ──Caption──▶ translation thread (optional) ──▶ events queue ──▶ caller

A stream is an object: many can share one `AsrPool`. Every queue is bounded. Live sources never
wait (a full capture queue drops audio and counts it); finals are never dropped: when too many wait
for ASR, the VAD thread waits, and the capture queue absorbs, then drops, audio.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from livecap.capture import AudioSource, CaptureQueue, EndOfAudio
from livecap.config import Config
from livecap.messages import (
    SAMPLE_RATE,
    AudioChunk,
    Caption,
    Event,
    InterimCaption,
    StreamEnd,
    StreamError,
    Utterance,
)
from livecap.packing import Packer
from livecap.reorder import Reorderer
from livecap.scheduler import AsrJob, AsrPool, Cancelled
from livecap.stabilize import LocalAgreement
from livecap.stats import StatsSnapshot, StreamStats
from livecap.translators.base import TranslationRequest, Translator
from livecap.vad import Segmenter

_END = object()


class Stream:
    """One audio stream being captioned. `next_event()` gives what to show, in order."""

    def __init__(
        self,
        source: AudioSource,
        pool: AsrPool,
        config: Config,
        *,
        live: bool,
        translator: Translator | None = None,
        stream_id: str = "0",
        converter: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.source = source
        self.pool = pool
        self.config = config
        self.live = live
        self.translator = translator
        self.stream_id = stream_id
        self.stats = StreamStats()
        self._convert = converter or (lambda samples: samples)
        self.capture = CaptureQueue(max_blocks=max(4, int(config.live.capture_queue_s / source.block_s)))
        self.segmenter = Segmenter(config.vad, stream_id)
        self._packer = None if live else Packer()
        self._agreement = LocalAgreement()
        self._final_slots = threading.Semaphore(config.live.max_pending_finals)
        self._pending: dict[int, float] = {}  # job seq -> capture time of its last speech
        self._reorder: Reorderer[tuple[AsrJob, object, BaseException | None]] = Reorderer()
        self._lock = threading.Lock()  # state shared with the display thread
        self._deliver_lock = threading.Lock()  # keeps delivery in order; never taken by the display
        self._jobs = 0
        self._jobs_total: int | None = None
        self._captions = 0
        self._shown_words = 0
        self._end_reason: str | None = None
        self._stop = threading.Event()
        self._events: queue.Queue[Event] = queue.Queue(maxsize=256)
        self._translate_queue: queue.Queue[object] | None = (
            queue.Queue(maxsize=config.live.max_pending_finals) if translator else None
        )
        self.position = 0.0  # stream seconds through the VAD
        self.transcribed = 0.0  # stream seconds up to which all captions are delivered

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._vad_loop, name=f"vad-{self.stream_id}", daemon=True).start()
        if self._translate_queue is not None:
            threading.Thread(target=self._translate_loop, name=f"translate-{self.stream_id}", daemon=True).start()
        self.source.start(self.capture)

    def stop(self, reason: str | None = None) -> None:
        """Stop taking audio. Live: what was heard is still transcribed before the end. A file
        (offline) stops sooner: finals not yet started are dropped, the running ones finish."""
        if self._end_reason is None:
            self._end_reason = reason
        self._stop.set()
        self.source.stop()
        if not self.live:
            self.pool.cancel_finals(self.stream_id)

    def next_event(self, timeout: float = 0.1) -> Event | None:
        """The next event, or None after `timeout` seconds without one (time to redraw)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def _discarding(self) -> bool:
        """A stopped file stream drops audio it has not yet cut into utterances."""
        return self._stop.is_set() and not self.live

    def snapshot(self) -> StatsSnapshot:
        finals, interims = self.pool.depth()
        now = time.monotonic()
        with self._lock:
            oldest = min(self._pending.values(), default=None)
        capture_s = self.capture.depth() * self.source.block_s
        behind = max(capture_s, now - oldest if oldest is not None else 0.0)
        return self.stats.snapshot(
            dropped_seconds=self.capture.dropped_samples / self.source.rate,
            capture_depth_s=capture_s,
            pending_finals=finals,
            pending_interims=interims,
            behind_seconds=behind,
            interims_skipped=self.pool.interims_skipped,
            transcribed_seconds=self.transcribed,
        )

    # -- VAD stage -----------------------------------------------------------------------------

    def _vad_loop(self) -> None:
        error = None
        last_interim = 0.0
        interval = self.config.live.interim_interval_ms / 1000
        try:
            while True:
                item = self.capture.get(timeout=0.1)
                if item is None:
                    continue
                now = time.monotonic()
                if isinstance(item, EndOfAudio):
                    error = item.error
                    if not self._discarding:
                        for utterance in self.segmenter.flush(now):
                            self._submit_final(utterance)
                    break
                if self._discarding:
                    continue
                samples = self._convert(item.samples)
                chunk = AudioChunk(samples, self.position, item.t_capture)
                self.position = chunk.end
                self.stats.add_audio(len(samples) / SAMPLE_RATE)
                for utterance in self.segmenter.push(chunk, now):
                    self._submit_final(utterance)
                if self.live and self.config.live.interim and now - last_interim >= interval:
                    snapshot = self.segmenter.snapshot(now)
                    if snapshot is not None and self.pool.submit_interim(AsrJob(snapshot, self._on_interim)):
                        last_interim = now
        except Exception as failure:  # keep what was heard: flush and end cleanly
            error = f"VAD stage failed: {failure}"
        if self._packer is not None and not self._discarding:
            for utterance in self._packer.flush():
                self._dispatch(utterance)
        if error:
            self._put(StreamError(error, fatal=True))
            self._end_reason = self._end_reason or error
        with self._deliver_lock:
            if self._jobs == 0 or self._reorder.next_seq >= self._jobs:
                self.transcribed = self.position
            self._jobs_total = self._jobs
            self._finish_if_done()

    def _submit_final(self, utterance: Utterance) -> None:
        if self.live:
            self.pool.drop_interim(self.stream_id)
            with self._lock:
                self._agreement.reset()
            self._dispatch(utterance)
        else:
            assert self._packer is not None
            for packed in self._packer.push(utterance):
                self._dispatch(packed)

    def _dispatch(self, utterance: Utterance) -> None:
        """Hand a final to ASR; waits (bounded) while too many finals are pending."""
        self._final_slots.acquire()
        with self._lock:
            seq = self._jobs
            self._jobs += 1
            self._pending[seq] = utterance.t_speech_end
        job = AsrJob(utterance, lambda job, result, error: self._on_final(seq, job, result, error))
        self.pool.submit_final(job)

    # -- ASR results (worker threads) ----------------------------------------------------------

    def _on_interim(self, job: AsrJob, result: object, error: BaseException | None) -> None:
        if error is not None or result is None:
            return
        text = " ".join(s.text for s in result.segments).strip()  # type: ignore[attr-defined]
        with self._lock:
            if job.utterance.seq != self.segmenter.next_seq or not text:
                return  # stale: its utterance is already final
            interim = self._agreement.update(text)
            words = len(interim.text.split())
            new_words = max(0, words - self._shown_words)
            self._shown_words = max(self._shown_words, words)
        event = InterimCaption(
            self.stream_id, job.utterance.seq, interim.committed, interim.tail, new_words, job.utterance.t_speech_end
        )
        try:
            self._events.put_nowait(event)
        except queue.Full:
            pass  # interims are shed first under load

    def _on_final(self, seq: int, job: AsrJob, result: object, error: BaseException | None) -> None:
        self._final_slots.release()
        self.stats.add_asr(job.t_finished - job.t_started)
        with self._deliver_lock:
            with self._lock:
                self._pending.pop(seq, None)
                self._shown_words = 0
            for done_job, done_result, done_error in self._reorder.push(seq, (job, result, error)):
                self._deliver(done_job, done_result, done_error)
            self._finish_if_done()

    def _deliver(self, job: AsrJob, result: object, error: BaseException | None) -> None:
        """Turn one in-order ASR result into captions (delivery lock held)."""
        u = job.utterance
        self.transcribed = u.end
        if isinstance(error, Cancelled):
            return
        if error is not None or result is None:
            self._put(StreamError(f"ASR failed on {u.start:.1f}-{u.end:.1f} s: {error}"))
            return
        for segment in result.segments:  # type: ignore[attr-defined]
            caption = Caption(
                stream_id=self.stream_id,
                seq=self._captions,
                start=u.to_stream_time(segment.start),
                end=u.to_stream_time(segment.end),
                text=segment.text,
                final=True,
                language=result.language,  # type: ignore[attr-defined]
                timings={
                    "speech_end": u.t_speech_end,
                    "emitted": u.t_emitted,
                    "asr_start": job.t_started,
                    "asr_end": job.t_finished,
                },
                audio=u.audio_between(segment.start, segment.end) if self.translator else None,
            )
            self._captions += 1
            self._forward(caption)

    def _finish_if_done(self) -> None:
        if self._jobs_total is not None and self._reorder.next_seq >= self._jobs_total:
            self._jobs_total = None  # once
            self._forward(_END)

    def _forward(self, item: object) -> None:
        if self._translate_queue is not None:
            self._translate_queue.put(item)
        else:
            self._put(item)

    def _put(self, item: object) -> None:
        self._events.put(StreamEnd(self._end_reason) if item is _END else item)  # type: ignore[arg-type]

    # -- translation stage ---------------------------------------------------------------------

    def _translate_loop(self) -> None:
        """Translate with as many threads as ASR workers; captions leave in the order they came."""
        assert self._translate_queue is not None
        workers = self.config.asr.workers
        in_flight: deque[Future[object]] = deque()
        order = threading.Lock()
        room = threading.Semaphore(2 * workers)  # bounded: at most this many captions in the stage

        def emit_ready(_: Future[object] | None = None) -> None:
            with order:
                while in_flight and in_flight[0].done():
                    self._put(in_flight.popleft().result())
                    room.release()

        with ThreadPoolExecutor(workers, thread_name_prefix=f"translate-{self.stream_id}") as executor:
            while True:
                item = self._translate_queue.get()
                room.acquire()
                if isinstance(item, Caption):
                    future = executor.submit(self._translate, item)
                else:  # a marker keeps its place behind the captions before it
                    future = Future()
                    future.set_result(item)
                with order:
                    in_flight.append(future)
                future.add_done_callback(emit_ready)
                if item is _END:
                    return

    def _translate(self, caption: Caption) -> Caption:
        assert self.translator is not None
        started = time.monotonic()
        target = self.config.translate.translate_to or "en"
        try:
            translation = self.translator.translate(
                TranslationRequest(caption.text, caption.language, target, caption.audio)
            )
            failed = False
        except Exception:  # show the original, marked, and go on
            translation, failed = caption.text, True
        timings = {**caption.timings, "translate_start": started, "translate_end": time.monotonic()}
        return replace(caption, translation=translation, translation_failed=failed, timings=timings)
