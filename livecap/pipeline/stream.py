"""A stream: one audio source through its stages to captions, on an engine's shared ASR pool.

    source ──RawBlock──▶ CaptureQueue ──▶ VAD (Segmenter) ──Utterance──▶ [Packer, files only]
        ──AsrJob──▶ AsrPool (shared) ──▶ Reorderer ──Caption──▶ [TranslationStage] ──▶ events

Every queue is bounded. Live sources never wait (a full capture queue drops audio and counts it);
finals are never dropped: when too many wait for ASR, the VAD thread waits, and the capture queue
absorbs, then drops, audio. Latency is recorded here, when the consumer takes a caption.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace

import numpy as np

from livecap.asr.base import AsrRequest, AsrResult, DecodeOptions
from livecap.asr.pool import AsrJob, AsrPool, Cancelled
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
    Word,
)
from livecap.pipeline.packing import Packer
from livecap.pipeline.reorder import Reorderer
from livecap.pipeline.stabilize import LocalAgreement
from livecap.pipeline.stats import StatsSnapshot, StreamStats, latency_breakdown
from livecap.pipeline.translate import TranslationStage
from livecap.pipeline.vad import Segmenter
from livecap.sources.queue import AudioSource, CaptureQueue, EndOfAudio
from livecap.translators.base import Translator

_END = object()  # after the last caption: becomes a StreamEnd


class Stream:
    """One audio stream being captioned. `next_event()` gives what to show, in order."""

    def __init__(
        self,
        source: AudioSource,
        pool: AsrPool,
        config: Config,
        *,
        stream_id: str,
        live: bool,
        decode: DecodeOptions = DecodeOptions(),
        translator: Translator | None = None,
        translation_pool: Executor | None = None,
        converter: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.source, self.pool, self.config, self.live = source, pool, config, live
        self.stream_id = stream_id
        self.decode = decode
        self.stats = StreamStats()
        # the stages, in the order audio flows through them
        self.capture = CaptureQueue(max_blocks=max(4, int(config.live.capture_queue_s / source.block_s)))
        self._convert = converter or (lambda samples: samples)
        self.segmenter = Segmenter(config.vad, stream_id)
        self._packer = None if live else Packer()
        self._agreement = LocalAgreement()
        self._reorder: Reorderer[tuple[AsrJob, AsrResult | None, BaseException | None]] = Reorderer()
        self._translation = (
            TranslationStage(
                translator, config.translate.translate_to or "en", translation_pool, self._put,
                in_flight=2 * config.asr.workers, name=f"translate-{stream_id}", end_marker=_END,
            )
            if translator is not None and translation_pool is not None
            else None
        )
        self._events: queue.Queue[Event] = queue.Queue(maxsize=256)
        # bookkeeping
        # a worker running a batch holds batch_size finals, not one: room for the next batch too
        self._final_slots = threading.Semaphore(config.live.max_pending_finals + pool.workers * (pool.batch_size - 1))
        self._pending: dict[int, float] = {}  # job seq -> capture time of its last speech
        self._lock = threading.Lock()  # state shared with the consumer thread
        self._deliver_lock = threading.Lock()  # keeps delivery in order; never taken by the consumer
        self._jobs = 0
        self._jobs_total: int | None = None
        self._captions = 0
        self._shown_words = 0
        self._interim_cost = 0.0  # seconds the last interim took: sets the interim cadence
        self._end_reason: str | None = None
        self._stop = threading.Event()
        self.position = 0.0  # stream seconds through the VAD
        self.transcribed = 0.0  # stream seconds up to which all captions are delivered

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._vad_loop, name=f"vad-{self.stream_id}", daemon=True).start()
        if self._translation is not None:
            self._translation.start()
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

    @property
    def clock(self) -> float:
        """Seconds of audio the source has delivered so far (the stream clock)."""
        return self.capture.captured_samples / self.source.rate

    def next_event(self, timeout: float = 0.1) -> Event | None:
        """The next event, or None after `timeout` seconds without one (time to redraw). Taking a
        caption is showing it: its latency is recorded now, and it is stamped with the stream clock."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        now = time.monotonic()
        if isinstance(event, Caption):
            event = replace(event, timings={**event.timings, "shown": now}, emitted_at=self.clock)
            self.stats.record_final(latency_breakdown(event))
        elif isinstance(event, InterimCaption):
            event = replace(event, emitted_at=self.clock)
            if event.new_words:
                self.stats.record_interim(now - event.t_audio_end)
        return event

    @property
    def _discarding(self) -> bool:
        """A stopped file stream drops audio it has not yet cut into utterances."""
        return self._stop.is_set() and not self.live

    def stats_snapshot(self) -> StatsSnapshot:
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
        live = self.config.live
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
                share = self.pool.interim_share_for(live.interim_share)  # the pool's budget, shared fairly
                interval = max(live.interim_interval_ms / 1000, self._interim_cost / share)
                if self.live and live.interim and now - last_interim >= interval:
                    heard = self.segmenter.open_utterance(now)
                    if heard is not None and self.pool.submit_interim(
                        AsrJob(
                            heard, AsrRequest(heard.samples, final=False, options=self.decode), self._on_interim
                        )
                    ):
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
        """Hand a final to ASR; waits (bounded) while too many finals are pending. A file stream
        stopped meanwhile drops it: cancelling its queued finals frees slots, and the window waiting
        here must not then be transcribed after the gap."""
        self._final_slots.acquire()
        if self._discarding:
            self._final_slots.release()
            return
        with self._lock:
            seq = self._jobs
            self._jobs += 1
            self._pending[seq] = utterance.t_speech_end
        request = AsrRequest(
            utterance.samples, final=True, options=self.decode, word_timestamps=self.config.asr.word_timestamps
        )
        self.pool.submit_final(
            AsrJob(utterance, request, lambda job, result, error: self._on_final(seq, job, result, error))
        )

    # -- ASR results (worker threads) ----------------------------------------------------------

    def _on_interim(self, job: AsrJob, result: AsrResult | None, error: BaseException | None) -> None:
        self._interim_cost = job.cost
        self.stats.add_asr(self._interim_cost, final=False)
        if error is not None or result is None:
            return
        text = " ".join(s.text for s in result.segments).strip()
        with self._lock:
            if job.utterance.seq != self.segmenter.next_seq or not text:
                return  # stale: its utterance is already final
            interim = self._agreement.update(text)
            words = len(interim.text.split())
            new_words = max(0, words - self._shown_words)
            self._shown_words = max(self._shown_words, words)
        u = job.utterance
        event = InterimCaption(self.stream_id, u.seq, interim.committed, interim.tail, new_words, u.t_speech_end, u.end)
        try:
            self._events.put_nowait(event)
        except queue.Full:
            pass  # interims are shed first under load

    def _on_final(self, seq: int, job: AsrJob, result: AsrResult | None, error: BaseException | None) -> None:
        self._final_slots.release()
        self.stats.add_asr(job.cost, final=True)
        with self._deliver_lock:
            with self._lock:
                self._pending.pop(seq, None)
                self._shown_words = 0
            for done_job, done_result, done_error in self._reorder.push(seq, (job, result, error)):
                self._deliver(done_job, done_result, done_error)
            self._finish_if_done()

    def _deliver(self, job: AsrJob, result: AsrResult | None, error: BaseException | None) -> None:
        """Turn one in-order ASR result into captions (delivery lock held)."""
        u = job.utterance
        self.transcribed = u.end
        if isinstance(error, Cancelled):
            return
        if error is not None or result is None:
            self._put(StreamError(f"ASR failed on {u.start:.1f}-{u.end:.1f} s: {error}"))
            return
        for segment in result.segments:
            caption = Caption(
                stream_id=self.stream_id,
                seq=self._captions,
                start=u.to_stream_time(segment.start),
                end=u.to_stream_time(segment.end),
                text=segment.text,
                final=True,
                language=result.language,
                timings={
                    "speech_end": u.t_speech_end,
                    "emitted": u.t_emitted,
                    "asr_start": job.t_started,
                    "asr_end": job.t_finished,
                },
                words=tuple(Word(*u.span_to_stream(w.start, w.end), w.word, w.probability) for w in segment.words),
                utterance=u.seq,
                audio=u.audio_between(segment.start, segment.end) if self._translation else None,
            )
            self._captions += 1
            self._forward(caption)

    def _finish_if_done(self) -> None:
        if self._jobs_total is not None and self._reorder.next_seq >= self._jobs_total:
            self._jobs_total = None  # once
            self._forward(_END)

    def _forward(self, item: object) -> None:
        if self._translation is not None:
            self._translation.put(item)
        else:
            self._put(item)

    def _put(self, item: object) -> None:
        self._events.put(StreamEnd(self._end_reason) if item is _END else item)  # type: ignore[arg-type]
