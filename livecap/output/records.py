"""One event, one JSON form: the same records go to the journal, `--jsonl` and network clients."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from livecap.messages import Caption, InterimCaption, SpeakerRevision, VadEvent
from livecap.pipeline.runner import Display
from livecap.pipeline.stats import StatsSnapshot


def final_record(caption: Caption, latency: dict[str, float] | None = None) -> dict[str, Any]:
    """A final caption as one JSON record, with its latency when known."""
    record: dict[str, Any] = {"type": "final", **caption.to_dict()}
    if latency:
        record["latency"] = latency
    return record


def interim_record(event: InterimCaption) -> dict[str, Any]:
    """`latency`: seconds from the capture of the end of the audio it was computed on until now."""
    return {
        "type": "interim",
        **event.to_dict(),
        "latency": round(time.monotonic() - event.t_audio_end, 4),
    }


def vad_record(event: VadEvent) -> dict[str, Any]:
    """A VAD decision, for the protocol adapters that report
    speech (never written to the journal)."""
    return {"type": "vad", **event.to_dict()}


def speaker_record(event: SpeakerRevision) -> dict[str, Any]:
    """Revised speakers of earlier finals, by `seq`."""
    return {"type": "speaker", **event.to_dict()}


def error_record(message: str) -> dict[str, Any]:
    """An error as one JSON record."""
    return {"type": "error", "message": message}


def stats_record(stats: StatsSnapshot) -> dict[str, Any]:
    """A stats snapshot as one JSON record, derived figures included."""
    return {
        "type": "stats",
        **dataclasses.asdict(stats),
        "rtf": stats.rtf,
        "compute_seconds": stats.compute_seconds,
        "cpu_per_audio_s": stats.cpu_per_audio_s,
    }


class RecordDisplay(Display):
    """A `Display` that turns each event into its record and hands it to `emit`: the one place the
    `--jsonl` lines and a network client's records are made. Stats go out at the end, and every
    `stats_every_s` when given (a live client watches them), with `stats_extras()` added."""

    stats_every_s: float | None = None

    def __init__(self) -> None:
        self._latest: StatsSnapshot | None = None
        self._sent: StatsSnapshot | None = None
        self._sent_at = time.monotonic()

    def emit(self, record: dict[str, Any]) -> None:
        """Where the records go; must not wait on a reader (it runs on the run loop's thread)."""
        raise NotImplementedError

    def stats_extras(self) -> dict[str, Any]:
        """What the reader's side adds to a stats record (nothing by default)."""
        return {}

    def start(self) -> None:
        """Nothing to open: the reader is there before the stream runs."""

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        self.emit(final_record(caption, latency))

    def interim(self, event: InterimCaption) -> None:
        self.emit(interim_record(event))

    def error(self, message: str) -> None:
        self.emit(error_record(message))

    def vad(self, event: VadEvent) -> None:
        self.emit(vad_record(event))

    def speakers(self, event: SpeakerRevision) -> None:
        self.emit(speaker_record(event))

    def tick(self, stats: StatsSnapshot) -> None:
        self._latest = stats
        if (
            self.stats_every_s is not None
            and time.monotonic() - self._sent_at >= self.stats_every_s
        ):
            self._send_stats()

    def stop(self) -> None:
        if self._latest is not None and self._latest is not self._sent:
            self._send_stats()  # the final figures, once

    def _send_stats(self) -> None:
        assert self._latest is not None
        self._sent, self._sent_at = self._latest, time.monotonic()
        self.emit({**stats_record(self._latest), **self.stats_extras()})
