"""How many live streams a `livecap serve` takes: N concurrent WebSocket clients stream real speech
at 1x to a server process on loopback; per N, final-caption latency p50/p95 (client side: from the
final's own latency record), audio dropped by the server, refusals (close 1013), WER and the
server's CPU use.

    .venv/bin/python scripts/serve_capacity.py                      # N = 1, 2, 4; 30 s of speech each
    .venv/bin/python scripts/serve_capacity.py --levels 1,2,4,6 --seconds 60 -- --workers 1

Arguments after `--` go to `livecap serve`. Speech: ../shared/audio/en_read (each client starts at a
different clip and goes round them, 1 s of silence between clips).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil

from livecap.bench.wer import wer
from livecap.server.client import FRAME_S, StreamResult, pcm_frames, stream_frames

REPO = Path(__file__).resolve().parent.parent
AUDIO = Path(os.environ.get("LIVECAP_SHARED_AUDIO", REPO.parent / "shared" / "audio"))


def speech(offset: int, seconds: float) -> tuple[list[bytes], str]:
    """Frames of about `seconds` of en_read clips starting at clip `offset`, and their reference."""
    rows = [line.split("\t") for line in (AUDIO / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    clips = [(AUDIO / r[0], r[-1]) for r in rows if r[0].startswith("en_read/")]
    frames: list[bytes] = []
    words: list[str] = []
    index = offset
    while len(frames) * FRAME_S < seconds:
        path, reference = clips[index % len(clips)]
        frames += pcm_frames(path, silence_s=1.0)
        words.append(reference)
        index += 1
    return frames, " ".join(words)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def level(url: str, n: int, seconds: float) -> tuple[list[StreamResult], list[str]]:
    jobs = [speech(i * 3, seconds) for i in range(n)]
    results = await asyncio.gather(*(stream_frames(url, frames, speed=1.0, timeout=600) for frames, _ in jobs))
    return list(results), [reference for _, reference in jobs]


@contextmanager
def serve_process(serve_args: list[str]) -> Iterator[tuple[str, psutil.Process, dict]]:
    """A `livecap serve` process on a free loopback port: (base URL, the process, its /status)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "livecap", "serve", "--port", str(port), *serve_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                status = httpx.get(base + "/status").json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        yield base, psutil.Process(server.pid), status
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,2,4", help="comma list of concurrent clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="speech each client sends (at 1x)")
    args, serve_args = parser.parse_known_args()
    with serve_process([a for a in serve_args if a != "--"]) as (base, process, status):
        print(f"model {status['model']}, {status['workers']} workers, {status['compute_type']}; "
              f"{os.cpu_count()} cores; {args.seconds:g} s of speech per client at 1x\n")
        print("| clients | final latency p50 / p95 (s) | finals | dropped audio (s) | refused | WER % | server CPU (cores) |")
        print("|---|---|---|---|---|---|---|")
        for n in (int(x) for x in args.levels.split(",")):
            cpu0, t0 = sum(process.cpu_times()[:2]), time.monotonic()
            results, references = asyncio.run(level(base.replace("http", "ws") + "/v1/stream", n, args.seconds))
            cores = (sum(process.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
            latencies = [f["latency"]["latency"] for r in results for f in r.finals]
            refused = sum(r.close_code == 1013 for r in results)
            dropped = sum((r.stats or {}).get("dropped_seconds", 0.0) for r in results)
            served = [(r, ref) for r, ref in zip(results, references) if r.close_code == 1000]
            error = np.mean([wer(ref, r.text) for r, ref in served]) * 100 if served else float("nan")
            p50, p95 = (np.percentile(latencies, q) if latencies else float("nan") for q in (50, 95))
            print(f"| {n} | {p50:.2f} / {p95:.2f} | {len(latencies)} | {dropped:.1f} | {refused} | {error:.1f} | {cores:.2f} |")


if __name__ == "__main__":
    main()
