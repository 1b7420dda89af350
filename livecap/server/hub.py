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
    trim_heap,
)
from livecap.config import ServerConfig
from livecap.engine import Engine
from livecap.pipeline.stats import WINDOW, StatsSnapshot, percentile
from livecap.pipeline.stream import Stream
from livecap.server.admission import (
    Estimate,
    Refused,
    Told,
    Waiter,
    WaitingList,
    calibrate,
    estimate,
)
from livecap.server.memory import MemoryBudget, default_max_rss_mb
from livecap.server.requests import RequestError

LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
MONITOR_S = 1.0  # how often memory is sampled and the waiting lists looked at


class _Streams:
    """The stream places (live streams and shared sessions) as a waiting list's gate."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def fits(self) -> bool:
        hub = self.hub
        if hub.draining.is_set() or hub.active >= hub.stream_limit():
            return False
        # under pressure only an idle server takes one
        return not (hub.memory.pressure and hub.active)

    def take(self) -> None:
        self.hub.active += 1
        self.hub.streams_total += 1

    def give_back(self) -> None:
        self.hub.active -= 1
        self.hub.streams_total -= 1


class _Uploads:
    """The upload places as a waiting list's gate."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def fits(self) -> bool:
        hub = self.hub
        busy = hub.uploads_active >= hub.max_uploads or (hub.memory.pressure and hub.uploads_active)
        return not (hub.draining.is_set() or busy)

    def take(self) -> None:
        self.hub.uploads_active += 1
        self.hub.uploads_total += 1

    def give_back(self) -> None:
        self.hub.uploads_active -= 1
        self.hub.uploads_total -= 1


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
        # per model: each loaded model has its own pool
        self.workers = workers = default.pool.workers
        self.max_uploads = settings.max_uploads or workers
        self.started = time.monotonic()
        self._cpu_start = time.process_time()
        self.active = 0
        self.refused = 0
        self.streams_total = 0
        self.uploads_active = 0
        self.uploads_total = 0
        self.uploads_refused = 0
        self.uploads_abandoned = 0  # uploads stopped because their client went away
        self.audio_seconds = 0.0  # live and uploaded audio taken through the pipeline
        self.translate_seconds = 0.0  # busy seconds translating it (outside the ASR pool)
        self._latencies: deque[float] = deque(maxlen=WINDOW)  # deque appends are thread-safe
        # open live streams: their finals cost is measured as they go
        self._live: set[Stream] = set()
        self._live_done = (0.0, 0.0)  # ended live streams: final worker-seconds, audio seconds
        # calibration: one final, one interim call (s)
        self._prior: tuple[float, float] | None = None
        self.connections: set[asyncio.Task] = set()  # streams, shared sessions, viewers
        self.draining = asyncio.Event()
        self.memory = MemoryBudget(settings.max_rss_mb or default_max_rss_mb())
        self.streams_line = WaitingList(
            _Streams(self), "streams", settings.max_wait_s, settings.max_waiting
        )
        self.uploads_line = WaitingList(_Uploads(self), "uploads", settings.max_wait_s,
                                        settings.max_queued_uploads or 4 * self.max_uploads)
        self._released = False  # a stream or upload ended since the last heap trim
        self._monitor_task: asyncio.Task | None = None
        self.registry = CollectorRegistry()
        self.final_latency = Histogram(
            "livecap_final_latency_seconds",
            "last speech sample to final caption handed to the connection",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_HubCollector(self))

    async def start(self) -> None:
        """Before serving: measure one final and one interim call (auto admission starts from
        them), look at memory once, then keep watching it (`_monitor`) until `stop()`."""
        if self.settings.max_streams is None:
            default = self.default_engine
            self._prior = await asyncio.to_thread(
                calibrate, default.backend, default.config.asr.word_timestamps
            )
        self._shed(await asyncio.to_thread(self.memory.check))
        self._monitor_task = asyncio.create_task(self._monitor())

    def stop(self) -> None:
        """Stop watching; the engines (perhaps shared) are left with interims on."""
        if self._monitor_task is not None:
            self._monitor_task.cancel()
        self._shed(False)

    @property
    def default_engine(self) -> Engine:
        """The default model's engine (loaded for the
        server's whole life): admission is sized on it."""
        engine = self.models.engine(self.model)
        assert engine is not None, "the default model stays loaded"
        return engine

    def _shed(self, pressure: bool) -> None:
        for engine in self.models.engines():
            engine.pool.shed_interims = pressure

    async def _monitor(self) -> None:
        """Every MONITOR_S: sample memory and shed interims over the budget, give freed heap back
        once streams have ended, and admit who now fits."""
        while True:
            await asyncio.sleep(MONITOR_S)
            if self._released and not self.active and not self.uploads_active:
                self._released = False
                await asyncio.to_thread(trim_heap)
            self._shed(await asyncio.to_thread(self.memory.check))
            self.streams_line.kick()
            self.uploads_line.kick()

    # -- admission -----------------------------------------------------------------------------

    @property
    def max_streams(self) -> int:
        """Streams admitted at once now (`stream_limit()`), for readers that want a number."""
        return self.stream_limit()

    def stream_limit(self) -> int:
        """Streams admitted at once: `--max-streams`, or the estimate from measured load."""
        if self.settings.max_streams is not None:
            return self.settings.max_streams
        return self.estimate().streams

    def estimate(self) -> Estimate:
        """How many streams the default model's pool takes,
        from the calibration and the live streams."""
        pool = self.default_engine.pool
        final_s, audio_s = self._live_done
        for stream in self._live:
            final_s += stream.stats.asr_seconds
            audio_s += stream.stats.audio_seconds
        prior = self._prior or (1.0, 1.0)  # not calibrated (a hub not yet started): few streams
        return estimate(
            pool.workers, pool.interim_slots, prior, (final_s, audio_s), pool.interim_cost()
        )

    async def enter_stream(self, told: Told) -> None:
        """A place for a live stream or session, now or after
        waiting in line; `Refused` otherwise."""
        try:
            await self.streams_line.enter(told)
        except Refused:
            self.refused += 1
            raise

    async def enter_upload(self, told: Told = lambda position, eta: None) -> None:
        """A place for an upload, now or after waiting in line; `Refused` otherwise."""
        waiter = self.queue_upload(told)
        if waiter is not None:
            await self.wait_upload(waiter)

    def queue_upload(self, told: Told) -> Waiter | None:
        """A place for an upload now (None), or a place in line to `wait_upload` on (told its
        position at once); `Refused` when the line is full or waiting is off."""
        if self.uploads_line.take_now():
            return None
        try:
            return self.uploads_line.join(told)
        except Refused:
            self.uploads_refused += 1
            raise

    async def wait_upload(self, waiter: Waiter) -> None:
        """Until the upload in line has its place; `Refused` past `max_wait_s`."""
        try:
            await self.uploads_line.wait(waiter)
        except Refused:
            self.uploads_refused += 1
            raise

    def measure(self, stream: Stream) -> None:
        """An admitted live stream started: its finals cost counts in the estimate."""
        self._live.add(stream)

    def release_stream(self, stats: StatsSnapshot | None, stream: Stream | None = None) -> None:
        """A stream ended; `stats` are its final figures (None when it never started)."""
        self.active -= 1
        self._account(stats)
        if stream is not None and stream in self._live:
            self._live.discard(stream)
            if stats is not None:
                self._live_done = (
                    self._live_done[0] + stats.asr_seconds,
                    self._live_done[1] + stats.audio_seconds,
                )
        self._released = True
        self.streams_line.released()

    def release_upload(self, stats: StatsSnapshot | None) -> None:
        self.uploads_active -= 1
        self._account(stats)
        self._released = True
        self.uploads_line.released()

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

    async def lease(
        self, requested: object, kind: str, on_state: Callable[[str], None] | None = None
    ) -> Lease:
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
        default = self.default_engine
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
            # over 1: several models busy
            "utilization": round(busy / (uptime * self.workers), 4) if uptime else 0.0,
            "queued_finals": sum(finals for finals, _ in depths),
            "queued_interims": sum(interims for _, interims in depths),
            "interims_skipped": sum(engine.pool.interims_skipped for engine in engines),
            "interims_shed": sum(engine.pool.interims_shed for engine in engines),
            "interim_workers": default.pool.interim_slots,
            "streams_active": self.active,
            "streams_max": self.stream_limit(),
            "streams_limit": "auto" if self.settings.max_streams is None else "fixed",
            "admission_estimate": self.estimate().describe(),
            "streams_total": self.streams_total,
            "streams_refused": self.refused,
            "streams_waiting": len(self.streams_line),
            "streams_admitted_after_wait": self.streams_line.admitted_after_wait,
            "max_wait_s": self.settings.max_wait_s,
            "uploads_active": self.uploads_active,
            "uploads_max": self.max_uploads,
            "uploads_total": self.uploads_total,
            "uploads_waiting": len(self.uploads_line),
            "uploads_admitted_after_wait": self.uploads_line.admitted_after_wait,
            "uploads_refused": self.uploads_refused,
            "uploads_abandoned": self.uploads_abandoned,
            "uploads_line": self.uploads_line.describe(),
            **self.memory.describe(),
            # the default model's; each model has its own pool
            "asr_workers": default.pool.describe_workers(),
            "asr_retries": sum(engine.pool.retries for engine in engines),
            "asr_cancelled": sum(engine.pool.cancelled for engine in engines),
            "asr_discarded": sum(engine.pool.discarded for engine in engines),
            "audio_seconds": round(self.audio_seconds, 3),
            "final_latency_p50": _round(percentile(latencies, 50)),
            "final_latency_p95": _round(percentile(latencies, 95)),
            "translate_seconds": round(self.translate_seconds, 3),
            "compute_per_audio_s": _round(
                (busy + self.translate_seconds) / self.audio_seconds if self.audio_seconds else None
            ),
            "cpu_per_audio_s": _round(
                (time.process_time() - self._cpu_start) / self.audio_seconds
                if self.audio_seconds
                else None
            ),
            "uptime_s": round(uptime, 1),
            "draining": self.draining.is_set(),
            "models": {r.name: r.describe() for r in records},
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
            (
                "livecap_streams_waiting",
                "streams_waiting",
                "live streams and sessions waiting for a place",
            ),
            ("livecap_uploads_waiting", "uploads_waiting", "uploads waiting for a place"),
            ("livecap_rss_megabytes", "rss_mb", "resident memory of the server (MiB)"),
            (
                "livecap_max_rss_megabytes",
                "max_rss_mb",
                "the memory budget: above it interims are shed",
            ),
            ("livecap_memory_pressure", "memory_pressure", "1 while over the memory budget"),
        ):
            yield GaugeMetricFamily(name, doc, value=float(s[key]))
        estimate = s["admission_estimate"]
        for name, key, doc in (
            (
                "livecap_admission_estimate_streams",
                "streams",
                "live streams the measured load admits",
            ),
            (
                "livecap_admission_finals_per_audio_second",
                "finals_per_audio_s",
                "measured worker-seconds of finals per second of a stream's audio",
            ),
            (
                "livecap_admission_interim_cost_seconds",
                "interim_cost_s",
                "measured worker-seconds of one interim",
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=estimate[key])
        workers = s["asr_workers"]
        for name, key, doc in (
            ("livecap_asr_worker_failures", "failures", "ASR calls that raised"),
            ("livecap_asr_worker_hangs", "hangs", "ASR calls declared hung"),
            ("livecap_asr_worker_restarts", "restarts", "ASR worker threads replaced"),
        ):
            family = CounterMetricFamily(name, doc, labels=["worker"])
            for worker in workers:
                family.add_metric([str(worker["worker"])], worker[key])
            yield family
        for name, key, doc in (
            ("livecap_streams", "streams_total", "live streams admitted"),
            ("livecap_streams_refused", "streams_refused", "live streams refused at capacity"),
            ("livecap_uploads", "uploads_total", "uploads transcribed"),
            (
                "livecap_uploads_abandoned",
                "uploads_abandoned",
                "uploads stopped because their client went away",
            ),
            (
                "livecap_asr_cancelled",
                "asr_cancelled",
                "ASR jobs of stopped streams withdrawn before they ran",
            ),
            (
                "livecap_asr_discarded",
                "asr_discarded",
                "ASR results of stopped streams thrown away",
            ),
            ("livecap_audio_seconds", "audio_seconds", "seconds of audio taken"),
            ("livecap_asr_busy_seconds", "busy_seconds", "ASR worker-seconds spent"),
        ):
            yield CounterMetricFamily(name, doc, value=s[key])
        yield from _model_metrics(s["models"])


def _model_metrics(models: dict[str, dict]) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """The per-model figures of /status, labelled by model."""
    for family, name, key, doc in (
        (GaugeMetricFamily, "livecap_model_loaded", "loaded", "1 while the model is loaded"),
        (
            GaugeMetricFamily,
            "livecap_model_streams_active",
            "streams_active",
            "live streams and sessions on the model",
        ),
        (
            GaugeMetricFamily,
            "livecap_model_uploads_active",
            "uploads_active",
            "uploads on the model",
        ),
        (
            GaugeMetricFamily,
            "livecap_model_memory_bytes",
            "memory_bytes",
            "RSS growth over the model's load",
        ),
        (
            CounterMetricFamily,
            "livecap_model_streams",
            "streams_total",
            "live streams and sessions on the model",
        ),
        (
            CounterMetricFamily,
            "livecap_model_busy_seconds",
            "busy_seconds",
            "ASR worker-seconds on the model",
        ),
        (CounterMetricFamily, "livecap_model_loads", "loads", "times the model was loaded"),
        (CounterMetricFamily, "livecap_model_unloads", "unloads", "times the model was unloaded"),
    ):
        metric = family(name, doc, labels=["model"])
        for model, figures in models.items():
            metric.add_metric([model], float(figures[key] or 0))
        yield metric
