"""What every connection of one server shares: the engine, admission control, the figures behind
/status and /metrics, and the open connections (so a shutdown can drain them)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from livecap.engine import Engine
from livecap.pipeline.stats import WINDOW, StatsSnapshot, percentile
from livecap.server.settings import ServerSettings, default_max_streams

LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class Hub:
    """Shared server state; used from the event loop only, except `record_*` (any thread)."""

    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        workers = engine.pool.workers
        self.max_streams = settings.max_streams or default_max_streams(workers)
        self.max_uploads = settings.max_uploads or workers
        self.model = engine.config.asr.model
        self.started = time.monotonic()
        self._cpu_start = time.process_time()
        self.active = 0
        self.refused = 0
        self.streams_total = 0
        self.uploads_active = 0
        self.uploads_total = 0
        self.audio_seconds = 0.0  # live and uploaded audio taken through the pipeline
        self.translate_seconds = 0.0  # busy seconds translating it (outside the ASR pool)
        self._latencies: deque[float] = deque(maxlen=WINDOW)  # deque appends are thread-safe
        self.connections: set[asyncio.Task] = set()  # streams, shared sessions, viewers
        self.draining = asyncio.Event()
        self.registry = CollectorRegistry()
        self.final_latency = Histogram(
            "livecap_final_latency_seconds", "last speech sample to final caption handed to the connection",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.registry.register(_HubCollector(self))

    # -- admission -----------------------------------------------------------------------------

    def admit_stream(self) -> bool:
        if self.active >= self.max_streams:
            self.refused += 1
            return False
        self.active += 1
        self.streams_total += 1
        return True

    def release_stream(self, stats: StatsSnapshot | None) -> None:
        """A stream ended; `stats` are its final figures (None when it never started)."""
        self.active -= 1
        self._account(stats)

    def admit_upload(self) -> bool:
        if self.uploads_active >= self.max_uploads:
            return False
        self.uploads_active += 1
        self.uploads_total += 1
        return True

    def release_upload(self, stats: StatsSnapshot | None) -> None:
        self.uploads_active -= 1
        self._account(stats)

    def _account(self, stats: StatsSnapshot | None) -> None:
        """Count a finished stream's audio and the translation work done on it, so the compute
        per audio second covers all the work, not only the ASR pool's."""
        if stats is not None:
            self.audio_seconds += stats.audio_seconds
            self.translate_seconds += stats.translate_seconds

    def record_final(self, latency: float) -> None:
        """A live final's latency (from a stream's pump thread)."""
        self._latencies.append(latency)
        self.final_latency.observe(latency)

    # -- shutdown ------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Refuse new streams and let the open ones send their last finals (each connection bounds
        its own wait by `drain_s`); then they close with 1001."""
        self.draining.set()
        if self.connections:
            await asyncio.wait(set(self.connections), timeout=self.settings.drain_s + 5)

    # -- figures -------------------------------------------------------------------------------

    def status_report(self) -> dict:
        """The hub's part of /status (and what /metrics reads)."""
        pool = self.engine.pool
        finals, interims = pool.depth()
        uptime = time.monotonic() - self.started
        latencies = list(self._latencies)
        return {
            "model": self.model,
            "device": self.engine.backend.device,
            "compute_type": self.engine.backend.compute_type,
            "workers": pool.workers,
            "busy_seconds": round(pool.busy_seconds, 3),
            "utilization": round(pool.busy_seconds / (uptime * pool.workers), 4) if uptime else 0.0,
            "queued_finals": finals,
            "queued_interims": interims,
            "interims_skipped": pool.interims_skipped,
            "streams_active": self.active,
            "streams_max": self.max_streams,
            "streams_total": self.streams_total,
            "streams_refused": self.refused,
            "uploads_active": self.uploads_active,
            "uploads_total": self.uploads_total,
            "audio_seconds": round(self.audio_seconds, 3),
            "final_latency_p50": _round(percentile(latencies, 50)),
            "final_latency_p95": _round(percentile(latencies, 95)),
            "translate_seconds": round(self.translate_seconds, 3),
            "compute_per_audio_s": _round(
                (pool.busy_seconds + self.translate_seconds) / self.audio_seconds if self.audio_seconds else None
            ),
            "cpu_per_audio_s": _round(
                (time.process_time() - self._cpu_start) / self.audio_seconds if self.audio_seconds else None
            ),
            "uptime_s": round(uptime, 1),
            "draining": self.draining.is_set(),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class _HubCollector(Collector):
    """Reads the hub at scrape time, so /metrics and /status never disagree."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.hub.status_report()
        for name, key, doc in (
            ("livecap_streams_active", "streams_active", "open live streams"),
            ("livecap_streams_max", "streams_max", "live streams admitted at once"),
            ("livecap_uploads_active", "uploads_active", "uploads being transcribed"),
            ("livecap_asr_workers", "workers", "ASR workers"),
            ("livecap_queued_finals", "queued_finals", "final utterances waiting for a worker"),
            ("livecap_queued_interims", "queued_interims", "interim decodes waiting for a worker"),
        ):
            yield GaugeMetricFamily(name, doc, value=s[key])
        for name, key, doc in (
            ("livecap_streams", "streams_total", "live streams admitted"),
            ("livecap_streams_refused", "streams_refused", "live streams refused at capacity"),
            ("livecap_uploads", "uploads_total", "uploads transcribed"),
            ("livecap_audio_seconds", "audio_seconds", "seconds of audio taken"),
            ("livecap_asr_busy_seconds", "busy_seconds", "ASR worker-seconds spent"),
        ):
            yield CounterMetricFamily(name, doc, value=s[key])
