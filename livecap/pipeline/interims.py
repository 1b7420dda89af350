"""The interim branch (live only): open utterance -> ASR pool (interim lane) -> agreement -> events.

While an utterance is being spoken, the segmentation stage offers it here after each audio block;
now and then (at the configured cadence, slowed so interims take at most `interim_share` of a
worker, or this stream's fair part of the pool's interim budget) it is transcribed again, and the
words two hypotheses agree on are committed (`LocalAgreement`). Entry: `offer()`. Exit: `emit`,
which may drop an interim (they are shed first under load). `cut()` says the utterance became
final: a queued interim for it is dropped and the agreement starts again; a result that comes back
for it later is stale and discarded. When speech went on past the cut (the length limit), the
words committed past it stay committed in the next utterance, whose first interim is due at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from livecap.asr.base import AsrRequest, AsrResult, DecodeOptions
from livecap.asr.pool import AsrJob, AsrPool
from livecap.config import LiveConfig
from livecap.messages import InterimCaption, Utterance
from livecap.pipeline.stabilize import LocalAgreement
from livecap.pipeline.stats import StreamStats

Emit = Callable[[InterimCaption], None]


class Interims:
    """One live stream's interim captions."""

    def __init__(
        self,
        pool: AsrPool,
        config: LiveConfig,
        *,
        stream_id: str,
        decode: DecodeOptions,
        stats: StreamStats,
        current_utterance: Callable[[], int],
        emit: Emit,
    ) -> None:
        self.pool, self.config = pool, config
        self.stream_id = stream_id
        self.decode = decode
        self.stats = stats
        self._current = current_utterance
        self._emit = emit
        self._agreement = LocalAgreement()
        self._lock = threading.Lock()  # the agreement and the words shown: VAD and worker threads
        self._shown_words = 0
        self._carried: list[str] = []  # committed before a cut in speech, for the next utterance
        self._cost = 0.0  # seconds the last interim took: sets the cadence
        self._last = 0.0  # when the last one was queued

    def offer(self, now: float, open_utterance: Callable[[float], Utterance | None]) -> None:
        """After an audio block (VAD thread): queue the open utterance when an interim is due."""
        share = self.pool.interim_share_for(self.config.interim_share)  # the pool's, shared fairly
        interval = max(self.config.interim_interval_ms / 1000, self._cost / share)
        if not self.config.interim or now - self._last < interval:
            return
        heard = open_utterance(now)
        if heard is not None and self.pool.submit_interim(
            AsrJob(
                heard, AsrRequest(heard.samples, final=False, options=self.decode), self._on_result
            )
        ):
            self._last = now

    def cut(self, continued: bool = False) -> None:
        """The open utterance became final (the VAD thread); `continued`: speech goes on in the
        next utterance, which may begin with words already committed."""
        self.pool.drop_interim(self.stream_id)
        with self._lock:
            self._carried = self._agreement.committed if continued else []
            self._agreement.reset()
        if continued:
            self._last = 0.0

    def final_returned(self) -> None:
        """A final's ASR came back: the words shown are counted afresh."""
        with self._lock:
            self._shown_words = 0

    def _on_result(
        self, job: AsrJob, result: AsrResult | None, error: BaseException | None
    ) -> None:
        self._cost = job.cost
        self.stats.add_asr(self._cost, final=False)
        if error is not None or result is None:
            return
        text = " ".join(s.text for s in result.segments).strip()
        with self._lock:
            if job.utterance.seq != self._current() or not text:
                return  # stale: its utterance is already final
            if self._carried:
                self._agreement.carry(self._carried, text)
                self._carried = []
            interim = self._agreement.update(text)
            words = len(interim.text.split())
            new_words = max(0, words - self._shown_words)
            self._shown_words = max(self._shown_words, words)
        u = job.utterance
        self._emit(
            InterimCaption(
                self.stream_id, u.seq, interim.committed, interim.tail, new_words, u.t_speech_end,
                u.end,
            )
        )
