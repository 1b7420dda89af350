"""Many viewers of one shared session: a `livecap serve` process on loopback replays real speech
from its media library at 1x (one session, one transcription) while N WebSocket viewers watch.
Per N: whether every viewer got every final in order, the session's final latency (the
pipeline's, at the server) and the fan-out spread (first to last viewer receiving the same final,
client clock), the server's memory per viewer (RSS with the viewers connected minus the session's
own before they joined, over N) and CPU.

    .venv/bin/python scripts/session_viewers.py                        # N = 1 and
    200, 60 s of speech .venv/bin/python scripts/session_viewers.py --levels
    1,50,200,500 --seconds 30 -- --workers 1

Arguments after `--` go to `livecap serve`. Speech: ../shared/audio/en_read clips, 1 s of silence
between them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import websockets

from livecap.bench.mix import write_pcm_wav
from livecap.bench.streams import serve_process
from livecap.bench.wer import wer
from livecap.server.client import pcm_frames

AUDIO = Path(
    os.environ.get(
        "LIVECAP_SHARED_AUDIO", Path(__file__).resolve().parent.parent.parent / "shared" / "audio"
    )
)


def speech_file(seconds: float, folder: Path) -> tuple[Path, str]:
    """A 16 kHz WAV of en_read clips (about `seconds` long) and its reference text."""
    rows = [
        line.split("\t")
        for line in (AUDIO / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    ]
    clips = [(AUDIO / r[0], r[-1]) for r in rows if r[0].startswith("en_read/")]
    frames: list[bytes] = []
    words = []
    for path, reference in clips:
        if len(frames) * 0.1 >= seconds:
            break
        frames += pcm_frames(path, silence_s=1.0)
        words.append(reference)
    return write_pcm_wav(folder / "speech.wav", b"".join(frames)), " ".join(words)


async def viewer(url: str, connected: list[int]) -> list[tuple[float, int, str]]:
    """(receive time, seq, text) of each final until the session ends."""
    got = []
    async with websockets.connect(url, max_size=None, open_timeout=60) as connection:
        connected[0] += 1
        try:
            async for message in connection:
                event = json.loads(message)
                if event["type"] == "final":
                    got.append((time.monotonic(), event["seq"], event["text"]))
        except websockets.ConnectionClosed:
            pass
    return got


async def level(base: str, media: str, n: int, server: psutil.Process) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        session = (await client.post("/v1/sessions", json={"media": media})).json()
        # the session's stream is up (no final yet): the baseline without viewers
        await asyncio.sleep(1.5)
        rss_before = server.memory_info().rss
        url = base.replace("http://", "ws://") + f"/v1/sessions/{session['id']}/captions"
        connected = [0]
        cpu0 = server.cpu_times()
        t0 = time.monotonic()
        viewers = [asyncio.create_task(viewer(url, connected)) for _ in range(n)]
        while (await client.get(f"/v1/sessions/{session['id']}")).json()["viewers"] < n:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        rss_with = server.memory_info().rss
        results = await asyncio.gather(*viewers)
        cpu1 = server.cpu_times()
        wall = time.monotonic() - t0
        info = (await client.get(f"/v1/sessions/{session['id']}")).json()
    expected = [(seq, text) for _, seq, text in results[0]]
    complete = sum(1 for r in results if [(s, t) for _, s, t in r] == expected)
    ordered = all([s for _, s, _ in r] == sorted(s for _, s, _ in r) for r in results)
    spreads = [
        max(r[i][0] for r in results) - min(r[i][0] for r in results) for i in range(len(expected))
    ]
    return {
        "viewers": n,
        "finals": info["finals"],
        "complete": complete,
        "ordered": ordered,
        "latency_p50": info["final_latency_p50"],
        "latency_p95": info["final_latency_p95"],
        "spread_p50": statistics.median(spreads) if spreads else None,
        "spread_max": max(spreads, default=None),
        "rss_per_viewer_kib": (rss_with - rss_before) / n / 1024,
        "rss_mib": rss_with / 2**20,
        "cpu": (sum(cpu1[:2]) - sum(cpu0[:2])) / wall,
        "text": " ".join(t for _, t in expected),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,200", help="comma list of viewer counts")
    parser.add_argument("--seconds", type=float, default=60.0, help="speech the session replays")
    args, serve_args = parser.parse_known_args()
    serve_args = [a for a in serve_args if a != "--"]
    levels = [int(n) for n in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="livecap-viewers-") as folder:
        wav, reference = speech_file(args.seconds, Path(folder))
        serve = ["--data-dir", folder, "--max-viewers", str(max(levels) + 10), *serve_args]
        with serve_process(serve) as (base, server, _):
            with wav.open("rb") as handle:
                media = httpx.post(
                    base + "/v1/media", files={"file": ("speech.wav", handle)}, timeout=60
                ).json()["id"]
            print(
                f"{media}: {args.seconds:.0f} s of speech; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            print(
                "| viewers | every final, in order | finals | final latency p50 / p95 | fan-out "
                "spread p50 / max "
                "| RSS per viewer | server RSS | server CPU | WER |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for n in levels:
                r = asyncio.run(level(base, media, n, server))
                print(
                    f"| {n} | {r['complete']}/{n}{'' if r['ordered'] else ' (out of order!)'} | "
                    f"{r['finals']} "
                    f"| {r['latency_p50']:.2f} / {r['latency_p95']:.2f} s "
                    f"| {r['spread_p50'] * 1000:.0f} / {r['spread_max'] * 1000:.0f} ms "
                    f"| {r['rss_per_viewer_kib']:.0f} KiB | {r['rss_mib']:.0f} MiB | "
                    f"{r['cpu']:.2f} cores "
                    f"| {wer(reference, r['text']):.1%} |",
                    flush=True,
                )
            print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
