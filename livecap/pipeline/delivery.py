"""The delivery stage: finals' ASR outcomes -> reorder -> captions -> [translation] -> events.

ASR workers finish finals in any order; this stage puts them back in the order they were cut
(`Reorderer`), turns each result into captions (stream times, words, timings; what Whisper wrote
over the pause after the speech is dropped, `guards.drop_invented`), passes them through the
translation stage when there is one (which keeps their order), and emits them; after the last
final it emits `StreamEnd`. Entry: `take()`, from worker threads (and once from the segmentation
thread, with `SegmentationEnd`). Exit: `emit` (it waits while the consumer is behind).

It owns the delivery lock, which keeps captions in order; the consumer never takes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor

from livecap.asr.guards import drop_invented
from livecap.asr.pool import Cancelled
from livecap.messages import Caption, Event, StreamEnd, StreamError, Word
from livecap.pipeline.reorder import Reorderer
from livecap.pipeline.segmentation import SegmentationEnd, Transcribed
from livecap.pipeline.stats import StreamStats
from livecap.pipeline.translate import TranslationStage
from livecap.translators.base import Translator

Emit = Callable[[Event], None]

_END = object()  # after the last caption (through translation, in order): becomes a StreamEnd


class Delivery:
    """One stream's finals, in order, as captions."""

    def __init__(
        self,
        *,
        stream_id: str,
        stats: StreamStats,
        emit: Emit,
        translator: Translator | None = None,
        translation_pool: Executor | None = None,
        translate_to: str = "en",
        translation_in_flight: int = 2,
        keep_audio: bool = False,
    ) -> None:
        self.stream_id = stream_id
        # captions carry their audio (speech translation, speaker labels)
        self._keep_audio = keep_audio
        self.stats = stats
        self._emit = emit
        self._translation = (
            TranslationStage(
                translator,
                translate_to,
                translation_pool,
                self._put,
                in_flight=translation_in_flight,
                name=f"translate-{stream_id}",
                end_marker=_END,
            )
            if translator is not None and translation_pool is not None
            else None
        )
        self._reorder: Reorderer[Transcribed] = Reorderer()
        self._lock = threading.Lock()  # the delivery lock: keeps delivery in order
        self._captions = 0
        self._finals_total: int | None = None  # known once segmentation has ended
        self.end_reason: str | None = None  # why the stream ended early, if it did
        self.transcribed = 0.0  # stream seconds up to which all captions are delivered

    def start(self) -> None:
        if self._translation is not None:
            self._translation.start()

    def note_end(self, reason: str | None) -> None:
        """The first reason given for ending early is the one `StreamEnd` carries."""
        if self.end_reason is None:
            self.end_reason = reason

    def take(self, item: Transcribed | SegmentationEnd) -> None:
        """A final's ASR outcome, or the end of the finals."""
        if isinstance(item, SegmentationEnd):
            self._end(item)
            return
        self.stats.add_asr(item.job.cost, final=True)
        with self._lock:
            for ready in self._reorder.push(item.seq, item):
                self._caption(ready)
            self._finish_if_done()

    def _end(self, end: SegmentationEnd) -> None:
        if end.error:
            self._put(StreamError(end.error, fatal=True))
            self.note_end(end.error)
        with self._lock:
            if end.finals == 0 or self._reorder.next_seq >= end.finals:
                self.transcribed = end.position
            self._finals_total = end.finals
            self._finish_if_done()

    def _caption(self, done: Transcribed) -> None:
        """Turn one in-order ASR outcome into captions (delivery lock held)."""
        job, result, error = done.job, done.result, done.error
        u = job.utterance
        self.transcribed = u.end
        if isinstance(error, Cancelled):
            return
        if error is not None or result is None:
            self._put(StreamError(f"ASR failed on {u.start:.1f}-{u.end:.1f} s: {error}"))
            return
        segments = drop_invented(result.segments, u.past_speech)
        for index, segment in enumerate(segments):
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
                words=tuple(
                    Word(*u.span_to_stream(w.start, w.end), w.word, w.probability)
                    for w in segment.words
                ),
                utterance=u.seq,
                last_in_utterance=index == len(segments) - 1,
                audio=u.audio_between(segment.start, segment.end)
                if self._translation or self._keep_audio
                else None,
            )
            self._captions += 1
            self._forward(caption)

    def _finish_if_done(self) -> None:
        if self._finals_total is not None and self._reorder.next_seq >= self._finals_total:
            self._finals_total = None  # once
            self._forward(_END)

    def _forward(self, item: object) -> None:
        if self._translation is not None:
            self._translation.put(item)
        else:
            self._put(item)

    def _put(self, item: object) -> None:
        self._emit(StreamEnd(self.end_reason) if item is _END else item)  # type: ignore[arg-type]
