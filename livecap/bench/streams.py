"""`livecap bench --streams`: how many live streams one server takes. For each configuration a
`livecap serve` process starts on loopback with those settings; for each level N, N clients stream
the inputs' speech at 1x at once over `/v1/stream`. Per N: final latency p50/p95 (the finals' own
records), finals, audio the server dropped, refusals (close 1013), WER, the server's compute per
audio second (ASR worker-seconds and translation from /status, all streams) and CPU cores used. The capacity is
the largest N whose p95 final latency stays within `LATENCY_LIMIT_S` with nothing dropped or refused."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from livecap.bench.run import Item
from livecap.bench.wer import wer
from livecap.closecodes import NORMAL, TRY_LATER
from livecap.config import Config
from livecap.errors import LivecapError

LATENCY_LIMIT_S = 2.0
SETTINGS = ("model", "device", "compute_type", "workers", "beam_size", "cpu_threads", "batch_size")


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _speech(items: list[Item], offset: int, seconds: float) -> tuple[list[bytes], str]:
    """About `seconds` of the inputs with references, starting at input `offset`, and their text."""
    from livecap.server.client import FRAME_S, pcm_frames

    spoken = [i for i in items if i.reference] or items
    frames: list[bytes] = []
    texts: list[str] = []
    index = offset
    while len(frames) * FRAME_S < seconds:
        item = spoken[index % len(spoken)]
        frames += pcm_frames(item.path, silence_s=1.0)
        texts.append(item.reference or "")
        index += 1
    return frames, " ".join(texts)


async def _level(url: str, jobs: list[tuple[list[bytes], str]]) -> list[Any]:
    from livecap.server.client import stream_frames

    return list(await asyncio.gather(*(stream_frames(url, frames, speed=1.0, timeout=600) for frames, _ in jobs)))


@contextmanager
def serve_process(serve_args: list[str], env: dict[str, str] | None = None) -> Iterator[tuple[str, Any, dict]]:
    """A `livecap serve` process on a free loopback port: (base URL, its psutil.Process, its /status)."""
    import httpx
    import psutil

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "livecap", "serve", "--port", str(port), *serve_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if server.poll() is not None:
                assert server.stderr is not None
                raise LivecapError(f"the server did not start: {server.stderr.read().decode(errors='replace')[-300:]}")
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


def measure(config: Config, items: list[Item], levels: list[int], seconds: float) -> dict[str, Any]:
    """Start a server with `config`'s ASR settings (as LIVECAP_* variables) and measure every level."""
    import httpx

    env = {f"LIVECAP_{key.upper()}": str(getattr(config.asr, key)) for key in SETTINGS}
    with serve_process(["--max-streams", str(max(levels))], env) as (base, process, _):
        out = []
        for n in levels:
            before = httpx.get(base + "/status").json()
            cpu0, t0 = sum(process.cpu_times()[:2]), time.monotonic()
            jobs = [_speech(items, i * 3, seconds) for i in range(n)]
            results = asyncio.run(_level(base.replace("http", "ws") + "/v1/stream", jobs))
            after = httpx.get(base + "/status").json()
            latencies = [f["latency"]["latency"] for r in results for f in r.finals if "latency" in f]
            served = [(r, text) for r, (_, text) in zip(results, jobs) if r.close_code == NORMAL]
            audio = after["audio_seconds"] - before["audio_seconds"]
            out.append({
                "streams": n,
                "final_p50": float(np.percentile(latencies, 50)) if latencies else None,
                "final_p95": float(np.percentile(latencies, 95)) if latencies else None,
                "finals": len(latencies),
                "dropped_s": sum((r.stats or {}).get("dropped_seconds", 0.0) for r in results),
                "refused": sum(r.close_code == TRY_LATER for r in results),
                "wer": float(np.mean([wer(text, r.text) for r, text in served])) if served else None,
                "compute_per_audio_s": (  # ASR worker-seconds and translation, all streams
                    sum(after[k] - before[k] for k in ("busy_seconds", "translate_seconds")) / audio if audio else None
                ),
                "server_cores": (sum(process.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0),
            })
        return {"levels": out, "capacity": capacity(out)}


def capacity(levels: list[dict[str, Any]]) -> int:
    """The largest N that kept p95 final latency within the limit with nothing dropped or refused."""
    held = [
        level["streams"] for level in levels
        if level["final_p95"] is not None and level["final_p95"] <= LATENCY_LIMIT_S
        and not level["refused"] and level["dropped_s"] == 0
    ]
    return max(held, default=0)
