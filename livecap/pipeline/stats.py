"""Latency, real-time factor and load figures, measured from the timestamps messages carry.

The one place these figures are defined:
- final latency: capture time of the last speech sample of a caption -> the caption handed to the
  consumer (`Stream.next_event`), split into end-of-speech wait and processing;
- interim latency: capture time of the end of the audio an interim was decoded from -> handed out,
  for interims that add words;
- RTF: all compute spent on the stream (ASR worker-seconds for finals and interims, plus
  translation and speaker labelling) per second of audio; `cpu_per_audio_s`: the process's
  CPU seconds per second of audio.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from livecap.messages import Caption

WINDOW = 2000  # recent samples kept per figure


def percentile(values: list[float] | deque[float], q: float) -> float | None:
    """The q-th percentile of `values`, None when there are none."""
    return float(np.percentile(np.asarray(values), q)) if len(values) else None


def latency_breakdown(caption: Caption) -> dict[str, float]:
    """Seconds from the last speech sample to the screen, split by stage."""
    t = caption.timings
    t_shown = t["shown"]
    out = {
        "latency": t_shown - t["speech_end"],
        "eos_wait": t["emitted"] - t["speech_end"],
        "processing": t_shown - t["emitted"],
        "queue_wait": t["asr_start"] - t["emitted"],
        "asr": t["asr_end"] - t["asr_start"],
    }
    if "translate_end" in t:
        out["translate"] = t["translate_end"] - t["translate_start"]
    return {k: round(v, 4) for k, v in out.items()}


@dataclass(frozen=True)
class StatsSnapshot:
    """A stream's figures at one moment; derived figures are properties."""
    audio_seconds: float
    asr_seconds: float  # worker-seconds on finals
    interim_asr_seconds: float  # worker-seconds on interims
    translate_seconds: float  # busy seconds translating
    cpu_seconds: float  # process CPU seconds since the stream started (all threads; process-wide)
    final_p50: float | None
    final_p95: float | None
    eos_wait_p50: float | None
    processing_p50: float | None
    processing_p95: float | None
    interim_p50: float | None
    translate_p50: float | None
    translate_share: float | None  # of the final-caption latency
    finals: int
    dropped_seconds: float
    capture_depth_s: float
    pending_finals: int
    pending_interims: int
    behind_seconds: float
    interims_skipped: int
    transcribed_seconds: float  # stream position up to which every final is delivered
    # CPU seconds labelling speakers (embeddings, clustering, the file pass)
    diarize_seconds: float = 0.0

    @property
    def compute_seconds(self) -> float:
        return (
            self.asr_seconds
            + self.interim_asr_seconds
            + self.translate_seconds
            + self.diarize_seconds
        )

    @property
    def rtf(self) -> float | None:
        """All compute per audio second: finals, interims, translation and speaker labels."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else None

    @property
    def cpu_per_audio_s(self) -> float | None:
        return self.cpu_seconds / self.audio_seconds if self.audio_seconds else None


class StreamStats:
    """Thread-safe collector; the display thread records latencies, stages record the rest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.final = deque(maxlen=WINDOW)
        self.eos_wait = deque(maxlen=WINDOW)
        self.processing = deque(maxlen=WINDOW)
        self.interim = deque(maxlen=WINDOW)
        self.translate = deque(maxlen=WINDOW)
        self.finals = 0
        self.audio_seconds = 0.0
        self.asr_seconds = 0.0
        self.interim_asr_seconds = 0.0
        self.translate_seconds = 0.0
        self.diarize_seconds = 0.0
        self._cpu_start = time.process_time()

    def record_final(self, breakdown: dict[str, float]) -> None:
        with self._lock:
            self.finals += 1
            self.final.append(breakdown["latency"])
            self.eos_wait.append(breakdown["eos_wait"])
            self.processing.append(breakdown["processing"])
            if "translate" in breakdown:
                self.translate.append(breakdown["translate"])
                self.translate_seconds += breakdown["translate"]

    def record_interim(self, latency: float) -> None:
        with self._lock:
            self.interim.append(latency)

    def add_audio(self, seconds: float) -> None:
        with self._lock:
            self.audio_seconds += seconds

    def add_asr(self, seconds: float, *, final: bool) -> None:
        with self._lock:
            if final:
                self.asr_seconds += seconds
            else:
                self.interim_asr_seconds += seconds

    def add_diarize(self, seconds: float) -> None:
        with self._lock:
            self.diarize_seconds += seconds

    def snapshot(self, **load: float) -> StatsSnapshot:
        with self._lock:
            final_p50 = percentile(self.final, 50)
            translate_p50 = percentile(self.translate, 50)
            return StatsSnapshot(
                audio_seconds=self.audio_seconds,
                asr_seconds=self.asr_seconds,
                interim_asr_seconds=self.interim_asr_seconds,
                translate_seconds=self.translate_seconds,
                cpu_seconds=time.process_time() - self._cpu_start,
                final_p50=final_p50,
                final_p95=percentile(self.final, 95),
                eos_wait_p50=percentile(self.eos_wait, 50),
                processing_p50=percentile(self.processing, 50),
                processing_p95=percentile(self.processing, 95),
                interim_p50=percentile(self.interim, 50),
                translate_p50=translate_p50,
                translate_share=translate_p50 / final_p50
                if translate_p50 is not None and final_p50
                else None,
                finals=self.finals,
                diarize_seconds=self.diarize_seconds,
                **load,  # type: ignore[arg-type]
            )
