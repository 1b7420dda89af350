"""One event, one JSON form: the same records go to the journal, `--jsonl` and network clients."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from livecap.messages import Caption, InterimCaption, SpeakerRevision, VadEvent
from livecap.pipeline.stats import StatsSnapshot


def final_record(caption: Caption, latency: dict[str, float] | None = None) -> dict[str, Any]:
    """A final caption as one JSON record, with its latency when known."""
    record: dict[str, Any] = {"type": "final", **caption.to_dict()}
    if latency:
        record["latency"] = latency
    return record


def interim_record(event: InterimCaption) -> dict[str, Any]:
    """`latency`: seconds from the capture of the end of the audio it was computed on until now."""
    return {"type": "interim", **event.to_dict(), "latency": round(time.monotonic() - event.t_audio_end, 4)}


def vad_record(event: VadEvent) -> dict[str, Any]:
    """A VAD decision, for the protocol adapters that report speech (never written to the journal)."""
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
