"""Server memory across many sequential streams: a `livecap serve` process on loopback takes N live
streams one after another (the en_read clips of ../shared/audio, each sent at `--speed` x real
time), and its RSS is read after start-up, after each stream, and after `--idle` seconds with no
stream at all. Prints the figures and whether the idle RSS came back near the start.

    .venv/bin/python scripts/server_rss.py [--streams 29]
    [--speed 4] [--idle 5] [--env MALLOC_ARENA_MAX=2]

Run it against another tree with PYTHONPATH=that/tree to compare before and after."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import manifest  # noqa: E402
from livecap.bench.streams import serve_process  # noqa: E402
from livecap.server.client import stream_file  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=29)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds without streams before the last reading"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="for the server process"
    )
    args = parser.parse_args()
    clips = [
        c
        for c in manifest()
        if c.language == "en" and c.path.is_file() and "en_read" in str(c.path)
    ]
    if not clips:
        sys.exit("the en_read clips of ../shared/audio are needed (LIVECAP_SHARED_AUDIO)")
    env = dict(item.split("=", 1) for item in args.env)
    with serve_process(["--max-streams", "4"], env) as (base, process, _):
        mib = lambda: process.memory_info().rss / 2**20  # noqa: E731
        time.sleep(args.idle)
        readings = [("started", mib())]
        for index in range(args.streams):
            clip = clips[index % len(clips)]
            result = asyncio.run(
                stream_file(base.replace("http", "ws") + "/v1/stream", clip.path, speed=args.speed)
            )
            if result.close_code != 1000:
                sys.exit(
                    f"stream {index + 1} closed with {result.close_code}: {result.close_reason}"
                )
            readings.append((f"after stream {index + 1}", mib()))
            print(f"{readings[-1][0]:>18}: {readings[-1][1]:7.1f} MiB", flush=True)
        time.sleep(args.idle)
        readings.append((f"idle {args.idle:g} s", mib()))
    start, peak, idle = readings[0][1], max(r for _, r in readings), readings[-1][1]
    print(
        f"\nRSS: started {start:.1f} MiB, peak {peak:.1f} MiB, after the last stream "
        f"{readings[-2][1]:.1f} MiB, "
        f"idle {idle:.1f} MiB ({idle - start:+.1f} MiB against the start); env {env or 'none'}"
    )


if __name__ == "__main__":
    main()
