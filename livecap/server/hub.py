"""What every connection of one server shares: the models (each loaded one an engine), admission
control, the figures behind /status and /metrics, and the open connections (so a shutdown can
drain them)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from livecap.asr.registry import (
    Cancelled,
    Lease,
    ModelBusy,
    ModelLoadFailed,
    ModelRegistry,
    ModelUnavailable,
)
from livecap.config import ServerConfig
from livecap.pipeline.stats import WINDOW, StatsSnapshot, percentile
from livecap.server.requests import RequestError

LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
STREAMS_PER_WORKER = 2  # README, Server: where final latency stays near a single stream's


def default_max_streams(workers: int) -> int:
    """Live streams (and sessions) at once when `max_streams` is not set. A live stream needs a
    worker for its finals and for interims, which the pool sheds under load; a faster machine or
    model can take more (`livecap bench --streams` measures it)."""
    return STREAMS_PER_WORKER * workers


class Hub:
    """Shared server state; used from the event loop only, except `record_*` (any thread)."""

    def __init__(self, models: ModelRegistry, settings: ServerConfig) -> None:
        """`settings`: the [server] section of the configuration."""
        self.models = models
        self.settings = settings
        self.model = models.default
        default = models.engine(self.model)
        assert default is not None, "the default model is loaded before the hub is made"
        self.config = default.config  # the server's settings for every model but its name
        self.device, self.compute_type = default.backend.device, default.backend.compute_type
        self.workers = workers = default.pool.workers  # per model: each loaded model has its own pool
        self.max_streams = settings.max_streams or default_max_streams(workers)
        self.max_uploads = settings.max_uploads or workers
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
        """A live final's latency (from a stream's run thread)."""
        self._latencies.append(latency)
        self.final_latency.observe(latency)

    # -- models --------------------------------------------------------------------------------

    async def lease(self, requested: object, kind: str, on_state: Callable[[str], None] | None = None) -> Lease:
        """The named model, loaded first when needed, off the event loop (other streams go on);
        a refusal is a `RequestError`: 404 unknown, 503 no free slot in time, 500 failed to load."""
        cancel = threading.Event()
        job = _own_thread(self.models.acquire, requested, kind, on_state, cancel)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:  # the request went away: a lease that still comes is let go
            cancel.set()
            job.add_done_callback(lambda done: done.exception() or done.result().release())
            raise
        except ModelUnavailable as error:
            raise RequestError(str(error), 404, code="model_not_found") from None
        except (ModelBusy, Cancelled) as error:
            raise RequestError(str(error), 503, "server_error", code="model_busy") from None
        except ModelLoadFailed as error:
            raise RequestError(str(error), 500, "server_error", code="model_load_failed") from None

    # -- shutdown ------------------------------------------------------------------------------

    def track(self, task: asyncio.Task) -> None:
        """A connection's task (a stream, a session, a viewer): a shutdown drains it; it is
        forgotten when it ends."""
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)

    async def drain(self) -> None:
        """Refuse new streams and let the open ones send their last finals (each connection bounds
        its own wait by `drain_s`); then they close with 1001."""
        self.draining.set()
        if self.connections:
            await asyncio.wait(set(self.connections), timeout=self.settings.drain_s + 5)

    # -- figures -------------------------------------------------------------------------------

    def status_report(self) -> dict:
        """The hub's part of /status (and what /metrics reads), with a record of each model."""
        records = self.models.records()
        engines = self.models.engines()
        depths = [engine.pool.depth() for engine in engines]
        busy = sum(r.busy_seconds for r in records)
        uptime = time.monotonic() - self.started
        latencies = list(self._latencies)
        return {
            "model": self.model,
            "device": self.device,
            "compute_type": self.compute_type,
            "workers": self.workers,
            "models_loaded": len(engines),
            "busy_seconds": round(busy, 3),
            "utilization": round(busy / (uptime * self.workers), 4) if uptime else 0.0,  # over 1: several models busy
            "queued_finals": sum(finals for finals, _ in depths),
            "queued_interims": sum(interims for _, interims in depths),
            "interims_skipped": sum(engine.pool.interims_skipped for engine in engines),
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
                (busy + self.translate_seconds) / self.audio_seconds if self.audio_seconds else None
            ),
            "cpu_per_audio_s": _round(
                (time.process_time() - self._cpu_start) / self.audio_seconds if self.audio_seconds else None
            ),
            "uptime_s": round(uptime, 1),
            "draining": self.draining.is_set(),
            "models": {r.name: self.models.describe(r) for r in records},
        }


def _own_thread(call: Callable[..., Lease], *args: object) -> asyncio.Future[Lease]:
    """`call(*args)` in a thread of its own, as a future of the running loop: a request waiting
    for a model slot (up to `model_wait_s`) must not hold one of the loop's few default-executor
    threads, which uploads and the media library need meanwhile."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Lease] = loop.create_future()

    def settle(result: Lease | None, error: BaseException | None) -> None:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = call(*args), None
        except BaseException as failure:  # handed to the awaiting request, which says why
            result, error = None, failure
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is gone (the server stopped): nobody holds the lease
            if result is not None:
                result.release()

    threading.Thread(target=run, name="model-lease", daemon=True).start()
    return future


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
        yield from _model_metrics(s["models"])


def _model_metrics(models: dict[str, dict]) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """The per-model figures of /status, labelled by model."""
    for family, name, key, doc in (
        (GaugeMetricFamily, "livecap_model_loaded", "loaded", "1 while the model is loaded"),
        (GaugeMetricFamily, "livecap_model_streams_active", "streams_active", "live streams and sessions on the model"),
        (GaugeMetricFamily, "livecap_model_uploads_active", "uploads_active", "uploads on the model"),
        (GaugeMetricFamily, "livecap_model_memory_bytes", "memory_bytes", "RSS growth over the model's load"),
        (CounterMetricFamily, "livecap_model_streams", "streams_total", "live streams and sessions on the model"),
        (CounterMetricFamily, "livecap_model_busy_seconds", "busy_seconds", "ASR worker-seconds on the model"),
        (CounterMetricFamily, "livecap_model_loads", "loads", "times the model was loaded"),
        (CounterMetricFamily, "livecap_model_unloads", "unloads", "times the model was unloaded"),
    ):
        metric = family(name, doc, labels=["model"])
        for model, figures in models.items():
            metric.add_metric([model], float(figures[key] or 0))
        yield metric
