"""The segmentation stage: capture queue -> VAD -> [packer] -> final slots -> ASR pool.

Its own thread takes audio blocks from the capture queue, cuts them into utterances (Silero VAD via
`Segmenter`), packs them into windows for files (`Packer`), and hands each final to the shared ASR
pool, numbered in the order it was cut. Entry: the capture queue (the source fills it). Exit: `out`,
called once per final with its ASR outcome (`Transcribed`, on a worker thread), then once with
`SegmentationEnd` (on this thread) when no more finals will come.

Asked to (`report`), it also tells what the VAD decided (`VadEvent`: speech started and stopped, and
the answers to the source's `finalize` and `clear` controls, which reach it in order with the
audio). It owns the final slots: at most `max_pending_finals` finals wait for ASR; past that the
thread waits, and the capture queue absorbs, then drops, audio. Finals are never dropped, except a
stopped file stream's, whose audio not yet cut is thrown away.

Live, a final is decoded speculatively (`Segmenter.tentative`) as soon as its audio is complete,
a fifth of a second into a pause, while the segmenter waits to see whether the pause is long
enough to end the utterance: the decode overlaps that wait. When the utterance ends with that very
audio the speculative decode is its final; when speech resumes it is not used (its compute is
counted all the same).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from livecap.asr.base import AsrRequest, AsrResult, DecodeOptions
from livecap.asr.pool import AsrJob, AsrPool
from livecap.config import Config
from livecap.messages import SAMPLE_RATE, AudioChunk, Utterance, VadEvent
from livecap.pipeline.interims import Interims
from livecap.pipeline.packing import Packer
from livecap.pipeline.stats import StreamStats
from livecap.pipeline.vad import Segmenter
from livecap.sources.queue import CaptureQueue, Control, EndOfAudio


@dataclass(frozen=True)
class Transcribed:
    """One final's ASR outcome; `seq` numbers the finals in the order they were cut."""

    seq: int
    job: AsrJob
    result: AsrResult | None
    error: BaseException | None


@dataclass(frozen=True)
class SegmentationEnd:
    """No more finals: `finals` were cut from `position` seconds of audio; `error` if it failed."""

    finals: int
    position: float
    error: str | None


Out = Callable[[Transcribed | SegmentationEnd], None]
Outcome = tuple[AsrJob, AsrResult | None, BaseException | None]


@dataclass
class _Speculation:
    """A tentative final decoded before its utterance ended."""

    utterance: Utterance
    outcome: Outcome | None = None  # its ASR outcome, once back
    seq: int | None = None  # its number once the utterance ended with this very audio
    dropped: bool = False  # speech resumed (or the utterance ended otherwise): not used

    def matches(self, final: Utterance) -> bool:
        u = self.utterance
        return (u.seq, u.start, u.end) == (final.seq, final.start, final.end)


class Segmentation:
    """Audio in, numbered finals out to the ASR pool; `start()` runs it on its own thread."""

    def __init__(
        self,
        capture: CaptureQueue,
        pool: AsrPool,
        config: Config,
        *,
        stream_id: str,
        live: bool,
        decode: DecodeOptions,
        stats: StreamStats,
        converter: Callable[[np.ndarray], np.ndarray] | None,
        report: Callable[[VadEvent], None] | None = None,
    ) -> None:
        self.capture, self.pool, self.config, self.live = capture, pool, config, live
        self._report = report
        self._speaking: int | None = None  # the utterance announced as speech_started
        self.stream_id = stream_id
        self.decode = decode
        self.stats = stats
        self._convert = converter or (lambda samples: samples)
        self.segmenter = Segmenter(config.vad, stream_id, live=live)
        self._packer = None if live else Packer()
        # a worker running a batch holds batch_size finals, not one: room for the next batch too
        self._final_slots = threading.Semaphore(
            config.live.max_pending_finals + pool.workers * (pool.batch_size - 1)
        )
        self._pending: dict[int, float] = {}  # seq -> capture time of its last speech
        self._lock = threading.Lock()
        self._finals = 0
        self._stop = threading.Event()
        self._out: Out | None = None
        self._interims: Interims | None = None
        self._speculation: _Speculation | None = None
        self.position = 0.0  # stream seconds through the VAD

    def link(self, out: Out, interims: Interims | None) -> None:
        """Where finals' outcomes go (the delivery stage) and the open utterance (live interims)."""
        self._out, self._interims = out, interims

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"vad-{self.stream_id}", daemon=True).start()

    def stop(self) -> None:
        """Stop cutting: a file stream drops the audio not yet cut; a live one cuts what it has."""
        self._stop.set()

    @property
    def discarding(self) -> bool:
        """A stopped file stream drops audio it has not yet cut into utterances."""
        return self._stop.is_set() and not self.live

    def oldest_pending(self) -> float | None:
        """Capture time of the last speech of the oldest final still waiting for its ASR result."""
        with self._lock:
            return min(self._pending.values(), default=None)

    def current_utterance(self) -> int:
        """The seq the utterance now open will have (an interim for an older one is stale)."""
        return self.segmenter.next_seq

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._out is not None, "link() the stage before start()"
        try:
            error = self._cut_until_end()
        except Exception as failure:  # keep what was heard: flush and end cleanly
            error = f"VAD stage failed: {failure}"
        if self._packer is not None and not self.discarding:
            for utterance in self._packer.flush():
                self._submit(utterance)
        with self._lock:
            self._drop_speculation()
        self._out(SegmentationEnd(self._finals, self.position, error))

    def _cut_until_end(self) -> str | None:
        """Cut audio into finals until the source ends; its error, if it failed."""
        while True:
            item = self.capture.get(timeout=0.1)
            if item is None:
                continue
            now = time.monotonic()
            if isinstance(item, EndOfAudio):
                if not self.discarding:
                    self._finish(self.segmenter.flush(now))
                return item.error
            if self.discarding:
                continue
            if isinstance(item, Control):
                self._control(item.action, now)
                continue
            samples = self._convert(item.samples)
            chunk = AudioChunk(samples, self.position, item.t_capture)
            self.position = chunk.end
            self.stats.add_audio(len(samples) / SAMPLE_RATE)
            self._finish(self.segmenter.push(chunk, now))
            if self._interims is not None:
                self._interims.offer(now, self.segmenter.open_utterance)
            if self.live:
                self._speculate(self.segmenter.tentative(now))

    def _finish(self, finished: list[Utterance]) -> None:
        """Report what the VAD decided (when asked), then cut the finished utterances."""
        if self._report is not None:
            self._report_speech(finished)
        for utterance in finished:
            self._cut(utterance)

    def _report_speech(self, finished: list[Utterance]) -> None:
        """speech_started / speech_stopped around each utterance, from the segmenter's state after a
        push: an utterance cut at its length limit stops and the next one starts at once."""
        segmenter = self.segmenter
        for utterance in finished:
            if self._speaking is None:
                self._vad("speech_started", utterance.seq, utterance.start)
            self._vad("speech_stopped", utterance.seq, utterance.end)
            self._speaking = None
        if self._speaking is not None and not segmenter.in_speech:  # too short or tonal: no final
            self._vad("speech_stopped", self._speaking, segmenter.position_s, kept=False)
            self._speaking = None
        if self._speaking is None and segmenter.speech_start is not None:
            self._speaking = segmenter.next_seq
            self._vad("speech_started", self._speaking, segmenter.speech_start)

    def _vad(self, kind: str, utterance: int | None, at: float, kept: bool = True) -> None:
        assert self._report is not None
        self._report(VadEvent(self.stream_id, kind, utterance, at, kept))

    def _control(self, action: str, now: float) -> None:
        """A client's finalize (cut the open utterance now) or clear (drop it unheard)."""
        segmenter = self.segmenter
        if action == "finalize":
            finished = segmenter.flush(now)
            self._finish(finished)
            kind, utterance = "finalized", finished[-1].seq if finished else None
        else:
            utterance = segmenter.discard()
            with self._lock:
                self._drop_speculation()
            if self._interims is not None:
                self._interims.cut()
            if self._report is not None and self._speaking is not None:
                self._vad("speech_stopped", self._speaking, segmenter.position_s, kept=False)
                self._speaking = None
            kind = "cleared"
        if self._report is not None:
            self._vad(kind, utterance, segmenter.position_s, kept=utterance is not None)

    def _cut(self, utterance: Utterance) -> None:
        """A final utterance: live, straight to ASR (its interims end); a file's, packed first."""
        if self._interims is not None:
            self._interims.cut(continued=utterance.continued)
        if self._packer is None:
            if not self._adopt(utterance):
                self._submit(utterance)
        else:
            for packed in self._packer.push(utterance):
                self._submit(packed)

    def _submit(self, utterance: Utterance) -> None:
        """Hand a final to ASR; waits (bounded) while too many finals are pending. A file stream
        stopped meanwhile drops it: cancelling its queued finals frees slots, and the window waiting
        here must not then be transcribed after the gap."""
        self._final_slots.acquire()
        if self.discarding:
            self._final_slots.release()
            return
        with self._lock:
            seq = self._number(utterance)
        self.pool.submit_final(
            AsrJob(
                utterance,
                self._request(utterance),
                lambda job, result, error: self._returned(seq, job, result, error),
            )
        )

    def _number(self, utterance: Utterance) -> int:
        """The next final's seq; it is pending until its ASR returns (lock held)."""
        seq = self._finals
        self._finals += 1
        self._pending[seq] = utterance.t_speech_end
        return seq

    def _request(self, utterance: Utterance) -> AsrRequest:
        return AsrRequest(
            self.segmenter.final_audio(utterance),
            final=True,
            options=self.decode,
            word_timestamps=self.config.asr.word_timestamps,
            live=self.live,
        )

    # -- speculative finals (live) ---------------------------------------------------------------

    def _speculate(self, tentative: Utterance | None) -> None:
        """Decode a tentative final now; it replaces an older speculation, which is not used."""
        if tentative is None:
            return
        speculation = _Speculation(tentative)
        with self._lock:
            self._drop_speculation()
            self._speculation = speculation
        self.pool.submit_final(
            AsrJob(
                tentative,
                self._request(tentative),
                lambda job, result, error: self._speculated(speculation, (job, result, error)),
            )
        )

    def _adopt(self, final: Utterance) -> bool:
        """A final whose audio was decoded speculatively takes that decode; False if none was."""
        with self._lock:
            speculation = self._speculation
            if speculation is None or not speculation.matches(final):
                self._drop_speculation()
                return False
            self._speculation = None
        self._final_slots.acquire()  # freed in `_returned`, as for any final
        with self._lock:
            speculation.seq = self._number(speculation.utterance)
            outcome = speculation.outcome
        if outcome is not None:
            self._returned(speculation.seq, *outcome)
        return True

    def _speculated(self, speculation: _Speculation, outcome: Outcome) -> None:
        """A speculative decode is back (a worker thread): kept until its utterance ends, handed
        on if it already did, or counted and forgotten if it is not used."""
        with self._lock:
            if speculation.seq is None and not speculation.dropped:
                speculation.outcome = outcome
                return
            seq = speculation.seq
        if seq is None:
            self.stats.add_asr(outcome[0].cost, final=True)
        else:
            self._returned(seq, *outcome)

    def _drop_speculation(self) -> None:
        """The speculation in flight is not used (lock held); its compute is counted."""
        speculation, self._speculation = self._speculation, None
        if speculation is None:
            return
        speculation.dropped = True
        if speculation.outcome is not None:
            self.stats.add_asr(speculation.outcome[0].cost, final=True)

    def _returned(
        self, seq: int, job: AsrJob, result: AsrResult | None, error: BaseException | None
    ) -> None:
        """A final's ASR is done (a worker thread): free its slot, hand the outcome on."""
        self._final_slots.release()
        with self._lock:
            self._pending.pop(seq, None)
        if self._interims is not None:
            self._interims.final_returned()
        assert self._out is not None
        self._out(Transcribed(seq, job, result, error))
