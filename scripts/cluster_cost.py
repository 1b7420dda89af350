"""What sharing sessions through Redis costs: Redis operations and bytes per final and per viewer,
and the latency a viewer on another replica adds over one on the session's own replica.

Starts the loopback cluster of scripts/cluster.sh (Redis, replicas a and b, HAProxy) in a fresh
folder, then for each level N runs one media session on replica a with N viewers on a and N on b
(all in this process, so their clocks agree). Redis's own counters (INFO commandstats and stats)
are read before and after each session; the cluster's idle work (heartbeats, leases, records),
measured over a quiet spell first, is taken out at the same rate.

    .venv/bin/python scripts/cluster_cost.py --media talk.wav --viewers 1,20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from livecap.bench.streams import free_port  # noqa: E402
from livecap.pipeline.stats import percentile  # noqa: E402


def redis_counters(port: int) -> tuple[int, int, int]:
    """(commands processed, bytes into Redis, bytes out of Redis) since the start."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "stats"], capture_output=True, text=True
    ).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return (int(fields["total_commands_processed"]), int(fields["total_net_input_bytes"]),
            int(fields["total_net_output_bytes"]))


def command_calls(port: int) -> dict[str, int]:
    """Calls of each Redis command since the start (INFO commandstats)."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True
    ).stdout
    calls = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            calls[name] = int(dict(f.split("=") for f in fields.split(","))["calls"])
    return calls


async def viewer(base: str, session: str, arrivals: dict[int, float]) -> None:
    url = base.replace("http://", "ws://") + f"/v1/sessions/{session}/captions"
    async with websockets.connect(url) as connection:
        async for message in connection:
            event = json.loads(message)
            if event["type"] == "final":
                arrivals.setdefault(event["seq"], time.monotonic())
            elif event["type"] == "end":
                return


async def one_session(a: str, b: str, media: str, n: int) -> tuple[int, list[float]]:
    """Finals, and per final and remote viewer: its arrival minus the first local viewer's."""
    async with httpx.AsyncClient(timeout=60) as client:
        session = (await client.post(a + "/v1/sessions", json={"media": media})).json()["id"]
    local = [{} for _ in range(n)]
    remote = [{} for _ in range(n)]
    await asyncio.gather(
        *(viewer(a, session, seen) for seen in local),
        *(viewer(b, session, seen) for seen in remote),
    )
    first_local = {seq: min(seen[seq] for seen in local) for seq in local[0]}
    added = [seen[seq] - first_local[seq] for seen in remote for seq in seen if seq in first_local]
    return len(first_local), added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--media", type=Path, required=True, help="a recording with speech, replayed at 1x"
    )
    parser.add_argument(
        "--viewers", default="1,20", help="viewers per replica, comma-separated levels"
    )
    parser.add_argument(
        "--quiet-s", type=float, default=20.0, help="how long the idle work is measured"
    )
    args = parser.parse_args()
    ports = {
        name: free_port() for name in ("FRONT_PORT", "REDIS_PORT", "PORT_A", "PORT_B", "STATS_PORT")
    }
    folder = tempfile.mkdtemp(prefix="livecap-cluster-")
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "LIVECAP": f"{sys.executable} -m livecap",
    }
    script = ["bash", str(REPO / "scripts" / "cluster.sh")]
    subprocess.run([*script, "start", folder], env=env, check=True)
    a, b = f"http://127.0.0.1:{ports['PORT_A']}", f"http://127.0.0.1:{ports['PORT_B']}"
    try:
        with args.media.open("rb") as handle:
            media = httpx.post(
                a + "/v1/media", files={"file": (args.media.name, handle)}, timeout=60
            ).json()["id"]
        before, t0 = redis_counters(ports["REDIS_PORT"]), time.monotonic()
        time.sleep(args.quiet_s)
        after = redis_counters(ports["REDIS_PORT"])
        idle = [(y - x) / (time.monotonic() - t0) for x, y in zip(before, after)]
        print(
            f"idle cluster (2 replicas): {idle[0]:.1f} Redis commands/s, {idle[1]:.0f} B/s in, "
            f"{idle[2]:.0f} B/s out"
        )
        print(
            "| viewers per replica | finals | Redis commands per final | bytes into Redis per "
            "final "
            "| bytes out of Redis per final | remote viewer's added latency p50 / p95 / max |"
        )
        print("|---|---|---|---|---|---|")
        breakdown = []
        for n in [int(x) for x in args.viewers.split(",")]:
            calls = command_calls(ports["REDIS_PORT"])
            before, t0 = redis_counters(ports["REDIS_PORT"]), time.monotonic()
            finals, added = asyncio.run(one_session(a, b, media, n))
            after, took = redis_counters(ports["REDIS_PORT"]), time.monotonic() - t0
            now = command_calls(ports["REDIS_PORT"])
            breakdown.append(
                (n, took, {c: now[c] - calls.get(c, 0) for c in now if now[c] > calls.get(c, 0)})
            )
            used = [(y - x) - rate * took for x, y, rate in zip(before, after, idle)]
            ms = [1000 * x for x in added]
            print(
                f"| {n} | {finals} | {used[0] / finals:.1f} | {used[1] / finals:.0f} | "
                f"{used[2] / finals:.0f} | "
                f"{percentile(ms, 50):.1f} / {percentile(ms, 95):.1f} / {max(ms):.1f} ms |"
            )
        for n, took, used_calls in breakdown:  # the idle work included: heartbeats, leases, records
            print(f"{n} viewers per replica, {took:.0f} s, commands:", ", ".join(
                f"{c} {k}" for c, k in sorted(used_calls.items(), key=lambda item: -item[1])))
    finally:
        subprocess.run([*script, "stop", folder], env=env, check=False)


if __name__ == "__main__":
    main()
