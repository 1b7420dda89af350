"""A stream: one audio source through its stages to captions, on an engine's shared ASR pool.

The stages in the order audio flows; each has one entry and one exit, and `Stream.__init__` wires
them in this order:

    source ─▶ CaptureQueue ─▶ Segmentation ═finals═▶ AsrPool ═▶ Delivery ─▶ events ─▶ next_event()
              (bounded)       (VAD, [Packer],        (shared)   (reorder, captions,
                               final slots)                      [translation])
                                   └─ open utterance ─▶ AsrPool ─▶ Interims ─▶ events (live only)

- `CaptureQueue` (sources/queue.py): the source pushes blocks in; a live source never waits (a
  full queue drops audio and counts it).
- `Segmentation` (pipeline/segmentation.py), its own thread. Entry: the capture queue. It cuts
  utterances (Silero VAD), packs them for files, and submits each final to the pool, numbered in
  cut order. Exit: `Delivery.take`, called with each final's outcome (`Transcribed`, on a worker
  thread), then once with `SegmentationEnd`. It owns the final slots: past `max_pending_finals`
  it waits, and the capture queue absorbs, then drops, audio. Finals are never dropped.
- `Interims` (pipeline/interims.py), live only. Entry: `offer()` after each block; the open
  utterance is transcribed at a bounded cadence and stabilised. Exit: `Stream._offer`, which sheds
  an interim when the consumer is behind. `cut()` ends the interims of an utterance made final.
- `Delivery` (pipeline/delivery.py). Entry: `take()`. It puts finals back in cut order, makes
  captions, translates them in order and ends with `StreamEnd`; it owns the delivery lock (the
  consumer never takes it). Exit: `Stream._put`, which waits while the consumer is behind.
- `next_event()`: the consumer takes events; taking a caption is showing it, so latency is
  recorded there.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from livecap.asr.base import DecodeOptions
from livecap.asr.pool import AsrPool
from livecap.config import Config
from livecap.messages import Caption, Event, InterimCaption
from livecap.pipeline.delivery import Delivery
from livecap.pipeline.interims import Interims
from livecap.pipeline.segmentation import Segmentation
from livecap.pipeline.stats import StatsSnapshot, StreamStats, latency_breakdown
from livecap.sources.queue import AudioSource, CaptureQueue
from livecap.translators.base import Translator

if TYPE_CHECKING:
    from livecap.diarize.live import LiveSpeakers


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
        vad_events: bool = False,
    ) -> None:
        self.source, self.pool, self.config, self.live = source, pool, config, live
        self.stream_id = stream_id
        self.decode = decode
        self.stats = StreamStats()
        # the stages, in the order audio flows through them (see the module docstring)
        blocks = max(4, int(config.live.capture_queue_s / source.block_s))
        self.capture = CaptureQueue(max_blocks=blocks)
        self.segmentation = Segmentation(
            self.capture, pool, config, stream_id=stream_id, live=live, decode=decode,
            stats=self.stats, converter=converter, report=self._put if vad_events else None,
        )
        self.interims = None if not live else Interims(
            pool, config.live, stream_id=stream_id, decode=decode, stats=self.stats,
            current_utterance=self.segmentation.current_utterance, emit=self._offer,
        )
        self.speakers = (
            _live_speakers(config, self.stats) if live and config.diarize.diarize else None
        )
        self.delivery = Delivery(
            stream_id=stream_id,
            stats=self.stats,
            emit=self._put if self.speakers is None else self._label,
            translator=translator,
            translation_pool=translation_pool,
            translate_to=config.translate.translate_to or "en",
            translation_in_flight=2 * config.asr.workers,
            keep_audio=self.speakers is not None,
        )
        self._events: queue.Queue[Event] = queue.Queue(maxsize=256)  # what next_event() takes
        self._started = False
        self.segmentation.link(self.delivery.take, self.interims)

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the stages and the source, once (a server starts a stream before it takes audio;
        `run_stream` then starts it again, which does nothing)."""
        if self._started:
            return
        self._started = True
        self.segmentation.start()
        self.delivery.start()
        self.source.start(self.capture)

    def stop(self, reason: str | None = None) -> None:
        """Stop taking audio; its interims end. Live: what was heard is still transcribed before the
        end. A file (offline) stops sooner: finals not yet started are dropped, and the running
        ones' results are thrown away (nobody waits for the rest of a file stopped)."""
        self.delivery.note_end(reason)
        self.segmentation.stop()
        self.source.stop()
        self.pool.withdraw(self.stream_id, finals=not self.live)

    @property
    def clock(self) -> float:
        """Seconds of audio the source has delivered so far (the stream clock)."""
        return self.capture.captured_samples / self.source.rate

    def next_event(self, timeout: float = 0.1) -> Event | None:
        """The next event, or None after `timeout` seconds without one (time to redraw). Taking a
        caption is showing it: its latency is recorded now, and it is stamped with the stream
        clock."""
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
    def position(self) -> float:
        """Stream seconds through the VAD."""
        return self.segmentation.position

    @property
    def transcribed(self) -> float:
        """Stream seconds up to which all captions are delivered."""
        return self.delivery.transcribed

    def stats_snapshot(self) -> StatsSnapshot:
        finals, interims = self.pool.depth()
        now = time.monotonic()
        oldest = self.segmentation.oldest_pending()
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

    # -- the exits of the stages: the events next_event() takes ----------------------------------

    def _put(self, event: Event) -> None:
        """Captions, errors and the end: waits while the consumer is behind (never drops)."""
        self._events.put(event)

    def _label(self, event: Event) -> None:
        """Live speaker labels: a final leaves with its speaker, then any revision it led to."""
        revision = None
        if isinstance(event, Caption) and self.speakers is not None:
            event, revision = self.speakers.label(event)
            event = replace(event, audio=None)  # translation is done: a kept caption holds no audio
        self._put(event)
        if revision is not None:
            self._put(revision)

    def _offer(self, event: InterimCaption) -> None:
        """An interim: dropped when the consumer is behind (interims are shed first under load)."""
        try:
            self._events.put_nowait(event)
        except queue.Full:
            pass


def _live_speakers(config: Config, stats: StreamStats) -> LiveSpeakers:
    """The speaker labeller of a live stream with `diarize` on (the extra loads on first use)."""
    from livecap.diarize.cluster import Hints
    from livecap.diarize.live import LiveSpeakers

    return LiveSpeakers(Hints.from_config(config), stats)
