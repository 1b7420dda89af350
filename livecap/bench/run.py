"""The measuring half of `livecap bench`: one run of livecap or of plain faster-whisper, each in a
fresh process so that load time and peak RSS belong to that run alone (see livecap.bench.plan)."""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livecap.config import Config
from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE

Step = Callable[[str], None]


@dataclass(frozen=True)
class Item:
    """One input file, its reference text and spoken language, when known."""

    path: Path
    reference: str | None
    duration: float
    language: str | None = None


@dataclass(frozen=True)
class Job:
    """One measured run, done in a child process."""

    kind: str  # "livecap" or "baseline"
    config: Config
    items: tuple[Item, ...]
    nonspeech: Path
    live_limit: float


# -- measuring (in the child) --------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory."""
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class _QuietView:
    """A display that shows nothing, keeps the events' JSON records (for word latency) and
    remembers the deepest queues it was told about."""

    def __init__(self) -> None:
        self.max_pending_finals = 0
        self.max_capture_s = 0.0
        self.max_behind_s = 0.0
        self.events: list[dict[str, Any]] = []

    def start(self) -> None:
        pass

    def final(self, caption: Any, latency: dict[str, float]) -> None:
        from livecap.output.records import final_record

        self.events.append(final_record(caption, latency))

    def interim(self, event: Any) -> None:
        from livecap.output.records import interim_record

        self.events.append(interim_record(event))

    def error(self, message: str) -> None:
        pass

    def tick(self, stats: Any) -> None:
        self.max_pending_finals = max(self.max_pending_finals, stats.pending_finals)
        self.max_capture_s = max(self.max_capture_s, stats.capture_depth_s)
        self.max_behind_s = max(self.max_behind_s, stats.behind_seconds)

    def stop(self) -> None:
        pass


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def _stage_times(path: Path, config: Config) -> tuple[float, float, float]:
    """Audio seconds, decoding seconds and VAD seconds, each stage timed alone."""
    from livecap.messages import AudioChunk
    from livecap.pipeline.vad import Segmenter
    from livecap.sources.file import decode_blocks

    blocks, decode_s = _timed(lambda: list(decode_blocks(path, 0.5)))  # FileSource's offline blocks
    segmenter = Segmenter(config.vad)

    def vad() -> None:
        position = 0.0
        for samples in blocks:
            chunk = AudioChunk(samples, position, time.monotonic())
            position = chunk.end
            segmenter.push(chunk, time.monotonic())
        segmenter.flush(time.monotonic())

    _, vad_s = _timed(vad)
    return sum(len(b) for b in blocks) / SAMPLE_RATE, decode_s, vad_s


def _offline(engine: Any, item: Item) -> dict[str, Any]:
    from livecap.api import transcribe

    audio_s, decode_s, vad_s = _stage_times(item.path, engine.config)
    result, wall_s = _timed(lambda: transcribe(item.path, engine=engine, display=_QuietView()))
    translate = [c.timings["translate_end"] - c.timings["translate_start"] for c in result.captions
                 if "translate_end" in c.timings]
    return {
        "path": str(item.path),
        "audio_s": audio_s,
        "wall_s": wall_s,
        "decode_s": decode_s,
        "vad_s": vad_s,
        "asr_s": result.stats.asr_seconds if result.stats else None,
        "translate_s": sum(translate) if engine.config.translate.translate_to else None,
        "first_caption_s": result.t_first_caption,
        "text": " ".join(c.text for c in result.captions),
        "reference": item.reference,
        "language": item.language,
        "errors": result.errors,
    }


def _live(engine: Any, items: tuple[Item, ...], limit: float, step: Step) -> dict[str, Any]:
    """Replay files at 1x until `limit` seconds of audio were heard."""
    from livecap.pipeline.runner import run_stream
    from livecap.sources.file import FileSource

    latencies: list[dict[str, float]] = []
    interims: list[float] = []
    view = _QuietView()
    heard = dropped = final_asr = interim_asr = translate = 0.0
    first: float | None = None
    files = []
    for item in items:
        left = limit - heard
        if left < 0.5:
            break
        step(f"live {item.path.name}")
        stream = engine.stream(FileSource(item.path, realtime=True), live=True)
        view.events = []
        result = run_stream(stream, view, duration=None if 0 < item.duration <= left else left)
        stats = result.stats
        heard += stats.audio_seconds if stats else left
        latencies += result.latencies
        interims += list(stream.stats.interim)
        dropped += stats.dropped_seconds if stats else 0.0
        if stats:
            final_asr, interim_asr = (
                final_asr + stats.asr_seconds,
                interim_asr + stats.interim_asr_seconds,
            )
            translate += stats.translate_seconds
        files.append(
            {
                "path": str(item.path),
                "audio_s": stats.audio_seconds if stats else left,
                "whole": 0 < item.duration <= left,
                "text": " ".join(c.text for c in result.captions),
                "reference": item.reference,
                "events": view.events,
            }
        )
        if first is None:
            first = result.t_first_caption
    return {
        "audio_s": heard,
        "files": files,
        "asr_s": final_asr,
        "interim_asr_s": interim_asr,
        "translate_s": translate,
        "latencies": latencies,
        "interims": interims,
        "dropped_s": dropped,
        "max_pending_finals": view.max_pending_finals,
        "max_capture_s": view.max_capture_s,
        "max_behind_s": view.max_behind_s,
        "first_caption_s": first,
    }


def measure_livecap(job: Job, step: Step) -> dict[str, Any]:
    """One run of livecap on the job's inputs: offline, non-speech and live figures."""
    from livecap.api import transcribe
    from livecap.asr.models import resolve_model
    from livecap.engine import Engine

    resolve_model(job.config.asr.model)  # a one-off join of the base model is not load time
    step("load livecap")
    engine, load_s = _timed(lambda: Engine(job.config))
    used = {"device": engine.backend.device, "compute_type": engine.backend.compute_type}
    with engine:
        files = []
        for item in job.items:
            step(f"offline {item.path.name}")
            files.append(_offline(engine, item))
        step("non-speech clip")
        nonspeech = transcribe(job.nonspeech, engine=engine, display=_QuietView())
        live = _live(engine, job.items, job.live_limit, step) if job.live_limit > 0 else None
    return {
        **used,
        "load_s": load_s,
        "files": files,
        "nonspeech_text": " ".join(c.text for c in nonspeech.captions),
        "live": live,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_baseline(job: Job, step: Step) -> dict[str, Any]:
    """One run of plain faster-whisper on the same inputs and settings."""
    from livecap.asr.device import pick_device
    from livecap.asr.models import resolve_model
    from livecap.asr.whisper import WhisperBackend
    from livecap.bench.latency import faster_whisper_text

    resolve_model(job.config.asr.model)
    step("load faster-whisper")
    backend, load_s = _timed(
        lambda: WhisperBackend(job.config.asr, device=pick_device(job.config.asr.device))
    )
    options = backend.options
    language = options.language if backend.multilingual else "en"

    def run(path: Path, vad: bool = True) -> tuple[str, list[list[Any]]]:
        text, words = faster_whisper_text(
            backend.model,
            path,
            word_timestamps=not vad,
            beam_size=options.beam_size,
            vad_filter=vad,
            language=language,
            task=options.task,
        )
        return text, [[w.word, w.start, w.end] for w in words]

    files = []
    for item in job.items:
        step(f"baseline {item.path.name}")
        (text, _), wall_s = _timed(lambda: run(item.path))
        step(f"baseline without VAD {item.path.name}")
        (text_novad, words), wall_novad_s = _timed(lambda: run(item.path, vad=False))
        files.append(
            {
                "path": str(item.path),
                "audio_s": item.duration,
                "wall_s": wall_s,
                "text": text,
                "reference": item.reference,
                "language": item.language,
                "wall_novad_s": wall_novad_s,
                "text_novad": text_novad,
                "words": words,
            }
        )
    step("baseline non-speech clip")
    return {
        "load_s": load_s,
        "files": files,
        "nonspeech_text": run(job.nonspeech)[0],
        "peak_rss_mb": peak_rss_mb(),
    }


def steps(job: Job) -> int:
    """How many progress steps a job reports."""
    if job.kind == "baseline":
        return 2 * len(job.items) + 2
    live, heard = 0, 0.0
    for item in job.items:
        if job.live_limit <= 0 or job.live_limit - heard < 0.5:
            break
        live += 1
        heard += item.duration
    return len(job.items) + 2 + live


def _child(job: Job, messages: Any) -> None:
    """Child process entry: report steps, then the figures or a one-line error."""
    try:
        measure = measure_livecap if job.kind == "livecap" else measure_baseline
        messages.put(("done", measure(job, lambda text: messages.put(("step", text)))))
    except LivecapError as error:
        messages.put(("error", str(error)))
    except KeyboardInterrupt:
        pass
    except Exception as error:  # reported as one line by the parent
        messages.put(("error", f"{job.kind} run failed: {type(error).__name__}: {error}"))


def run_job(job: Job, on_step: Step) -> dict[str, Any]:
    """Run one job in a fresh process (its own load time and peak RSS)."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    process = context.Process(target=_child, args=(job, messages), daemon=True)
    process.start()
    try:
        while True:
            try:
                kind, payload = messages.get(timeout=0.5)
            except queue.Empty:
                if process.is_alive():
                    continue
                try:
                    kind, payload = messages.get(timeout=1.0)
                except queue.Empty:
                    ended = f"the {job.kind} run ended unexpectedly (exit code {process.exitcode})"
                    raise LivecapError(ended) from None
            if kind == "step":
                on_step(payload)
            elif kind == "error":
                raise LivecapError(payload)
            else:
                return payload
    finally:
        if process.is_alive():
            process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join()
