"""`livecap bench --streams`: how many live streams one server takes. For each configuration a
`livecap serve` process starts on loopback with those settings and its default admission
(`--max-streams auto`), with a long `--max-wait-s` so that clients past its estimate wait in line
instead of being refused; for each level N, N clients stream the inputs' speech at 1x at once over
`/v1/stream`. Per N: final latency p50/p95 (the finals' own records), committed-word latency
p50/p95 (from spoken, in faster-whisper's word times, to first shown committed:
livecap.bench.latency), finals, clients that waited and for how long, the server's estimate, audio
dropped, refusals (close 1013), WER, the server's compute per audio second (ASR worker-seconds and
translation from /status, all streams) and CPU cores used. The capacity is the largest N admitted
at once whose p95 final latency stays within `LATENCY_LIMIT_S` and committed words within
`WORDS_LIMIT_S`, with nothing dropped or refused. Then how fast the server lets go of work nobody
waits for: a session DELETEd under a quiet publisher, and an upload whose client gives up while it
is transcribed (timings the tests leave to the bench)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from livecap.bench.mix import write_pcm_wav
from livecap.bench.run import Item
from livecap.bench.wer import wer
from livecap.closecodes import NORMAL, TRY_LATER
from livecap.config import Config
from livecap.errors import LivecapError

LATENCY_LIMIT_S = 2.0
WORDS_LIMIT_S = 2.5
MAX_WAIT_S = 900  # clients past the server's estimate wait this long in line before a refusal
ABANDONED_UPLOAD_S = 300.0  # speech in the upload that is given up on: far more than is done before
SETTINGS = ("model", "device", "compute_type", "workers", "beam_size", "cpu_threads", "batch_size")


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _speech(
    items: list[Item], offset: int, seconds: float
) -> tuple[list[bytes], str, list[tuple[float, Item]]]:
    """About `seconds` of the inputs with references, starting at input `offset`: the frames, their
    text and where each input starts in the stream (seconds)."""
    from livecap.server.client import pcm_frames

    spoken = [i for i in items if i.reference] or items
    frames: list[bytes] = []
    texts: list[str] = []
    starts: list[tuple[float, Item]] = []
    index = offset
    sent = 0.0
    while sent < seconds:
        item = spoken[index % len(spoken)]
        starts.append((sent, item))
        clip = pcm_frames(item.path, silence_s=1.0)
        frames += clip
        sent += sum(len(frame) for frame in clip) / 32_000
        texts.append(item.reference or "")
        index += 1
    return frames, " ".join(texts), starts


def reference_words(config: Config, items: list[Item]) -> dict[str, list[Any]]:
    """Each input's words with faster-whisper's own times (no
    VAD, word timestamps): when each word was spoken."""
    from livecap.asr.device import pick_device
    from livecap.asr.whisper import WhisperBackend
    from livecap.bench.latency import faster_whisper_text

    backend = WhisperBackend(config.asr, device=pick_device(config.asr.device))
    language = backend.options.language if backend.multilingual else "en"
    return {
        str(item.path): faster_whisper_text(
            backend.model,
            item.path,
            word_timestamps=True,
            vad_filter=False,
            beam_size=backend.options.beam_size,
            language=language,
        )[1]
        for item in items
    }


def committed_latencies(
    result: Any, starts: list[tuple[float, Item]], words: dict[str, list[Any]]
) -> list[float]:
    """Seconds from each word spoken to first shown committed, for one client's stream."""
    from livecap.bench.latency import TimedWord, shown_words, word_latencies

    reference = [
        TimedWord(w.word, w.start + start, w.end + start)
        for start, item in starts
        for w in words[str(item.path)]
    ]
    return word_latencies(reference, shown_words(result.events))["committed"]


async def _level(url: str, jobs: list[tuple[list[bytes], str, Any]]) -> list[Any]:
    from livecap.server.client import stream_frames

    return list(
        await asyncio.gather(*(stream_frames(url, job[0], speed=1.0, timeout=1800) for job in jobs))
    )


@contextmanager
def serve_process(
    serve_args: list[str], env: dict[str, str] | None = None
) -> Iterator[tuple[str, Any, dict]]:
    """A `livecap serve` process on a free loopback port:
    (base URL, its psutil.Process, its /status)."""
    import httpx
    import psutil

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "livecap", "serve", "--port", str(port), *serve_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if server.poll() is not None:
                assert server.stderr is not None
                raise LivecapError(
                    "the server did not start: "
                    f"{server.stderr.read().decode(errors='replace')[-300:]}"
                )
            try:
                status = httpx.get(base + "/status", timeout=1.0).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise LivecapError("the server did not start within 120 s")
        yield base, psutil.Process(server.pid), status
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def _until(condition: Callable[[], Any], what: str, limit_s: float = 600.0) -> Any:
    """Poll `condition` until it is true; its value. A server that never gets there is an error."""
    deadline = time.monotonic() + limit_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise LivecapError(f"the server did not {what} within {limit_s:g} s")
        time.sleep(0.05)
    return value


def start_upload(base: str, path: Path) -> socket.socket:
    """POST `path` to /v1/audio/transcriptions over a plain socket, its answer unread: closing the
    socket is a client that gives up while the server transcribes."""
    import httpx

    request = httpx.Request(
        "POST", base + "/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())}
    )
    body = request.read()
    head = f"POST {request.url.raw_path.decode()} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in request.headers.items()) + "\r\n"
    sock = socket.create_connection((request.url.host, request.url.port or 80))
    sock.sendall(head.encode() + body)
    return sock


def abandoned_upload(base: str, path: Path) -> dict[str, float]:
    """Upload `path`, give up once the server has transcribed some of it, and measure how long the
    server goes on: seconds until the upload's slot is free, ASR worker-seconds spent meanwhile and
    the ASR calls that ended meanwhile (those running when it left: at most one per worker)."""
    import httpx

    def status_when(ready: Callable[[dict[str, Any]], bool]) -> Callable[[], dict[str, Any] | None]:
        def poll() -> dict[str, Any] | None:
            status = httpx.get(base + "/status").json()
            return status if ready(status) else None
        return poll

    busy = httpx.get(base + "/status").json()["busy_seconds"]
    with start_upload(base, path):
        working = _until(
            status_when(lambda s: s["busy_seconds"] > busy), "start transcribing the upload"
        )
    gave_up = time.monotonic()
    done = _until(status_when(lambda s: s["uploads_active"] == 0), "stop the abandoned upload")
    def calls(status: dict[str, Any]) -> int:
        return sum(worker["calls"] for worker in status["asr_workers"])

    return {"upload_stop_s": time.monotonic() - gave_up,
            "upload_busy_after_s": done["busy_seconds"] - working["busy_seconds"],
            "upload_calls_after": calls(done) - calls(working)}


async def stopped_publisher(base: str, frames: list[bytes]) -> float:
    """Seconds from the DELETE of a session until its publisher, quiet after `frames`, is closed."""
    import httpx
    import websockets

    async with httpx.AsyncClient() as client:
        session = (await client.post(base + "/v1/sessions", json={"source": "publish"})).json()[
            "id"
        ]
        async with websockets.connect(
            base.replace("http", "ws", 1) + f"/v1/sessions/{session}/publish"
        ) as publisher:
            await publisher.send('{"type": "start"}')
            for frame in frames:
                await publisher.send(frame)
            asked = time.monotonic()
            await client.delete(base + f"/v1/sessions/{session}", timeout=60)
            try:
                async for _ in publisher:
                    pass
            except websockets.ConnectionClosed:
                pass
            return time.monotonic() - asked


def reactions(base: str, items: list[Item]) -> dict[str, float]:
    """How fast the server lets go: a DELETEd session's quiet publisher, an abandoned upload."""
    frames = _speech(items, 0, ABANDONED_UPLOAD_S)[0]
    with tempfile.TemporaryDirectory(prefix="livecap-bench-") as folder:
        path = write_pcm_wav(Path(folder) / "long.wav", b"".join(frames))
        upload = abandoned_upload(base, path)
    return {"delete_publisher_s": asyncio.run(stopped_publisher(base, frames[:20])), **upload}


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def measure(config: Config, items: list[Item], levels: list[int], seconds: float) -> dict[str, Any]:
    """Start a server with `config`'s ASR settings (as LIVECAP_* variables) and its default
    admission, and measure every level."""
    import httpx

    words = reference_words(config, [i for i in items if i.reference] or items)
    env = {f"LIVECAP_{key.upper()}": str(getattr(config.asr, key)) for key in SETTINGS}
    with serve_process(["--max-wait-s", str(MAX_WAIT_S)], env) as (base, process, _):
        out = []
        for n in levels:
            before = httpx.get(base + "/status").json()
            cpu0, t0 = sum(process.cpu_times()[:2]), time.monotonic()
            jobs = [_speech(items, i * 3, seconds) for i in range(n)]
            results = asyncio.run(_level(base.replace("http", "ws") + "/v1/stream", jobs))
            after = httpx.get(base + "/status").json()
            out.append(_level_figures(n, jobs, results, words, before, after))
            out[-1]["server_cores"] = (sum(process.cpu_times()[:2]) - cpu0) / (
                time.monotonic() - t0
            )
        return {"levels": out, "capacity": capacity(out), "reactions": reactions(base, items)}


def _level_figures(
    n: int,
    jobs: list[Any],
    results: list[Any],
    words: dict[str, list[Any]],
    before: dict,
    after: dict,
) -> dict[str, Any]:
    latencies = [f["latency"]["latency"] for r in results for f in r.finals if "latency" in f]
    committed = [x for r, job in zip(results, jobs) for x in committed_latencies(r, job[2], words)]
    served = [(r, job[1]) for r, job in zip(results, jobs) if r.close_code == NORMAL]
    waited = [r.waited_seconds for r in results if r.positions]
    audio = after["audio_seconds"] - before["audio_seconds"]
    return {
        "streams": n,
        "final_p50": _percentile(latencies, 50),
        "final_p95": _percentile(latencies, 95),
        "committed_p50": _percentile(committed, 50),
        "committed_p95": _percentile(committed, 95),
        "worst_stream_p95": max(  # fairness: no stream's finals wait behind the others'
            (
                r.stats["final_p95"]
                for r in results
                if r.stats and r.stats.get("final_p95") is not None
            ),
            default=None,
        ),
        "finals": len(latencies),
        "waited": len(waited),
        "wait_max_s": max(waited, default=0.0),
        "estimate": after["streams_max"],
        "dropped_s": sum((r.stats or {}).get("dropped_seconds", 0.0) for r in results),
        "refused": sum(r.close_code == TRY_LATER for r in results),
        "wer": float(np.mean([wer(text, r.text) for r, text in served])) if served else None,
        "compute_per_audio_s": (  # ASR worker-seconds and translation, all streams
            sum(after[k] - before[k] for k in ("busy_seconds", "translate_seconds")) / audio
            if audio
            else None
        ),
    }


def capacity(levels: list[dict[str, Any]]) -> int:
    """The largest N admitted at once that kept p95 final latency and committed words within their
    limits, with nothing dropped or refused."""
    held = [
        level["streams"] for level in levels
        if level["final_p95"] is not None and level["final_p95"] <= LATENCY_LIMIT_S
        and level.get("committed_p95") is not None and level["committed_p95"] <= WORDS_LIMIT_S
        and not level["refused"] and level["dropped_s"] == 0 and not level.get("waited")
    ]
    return max(held, default=0)
