"""A small client for `/v1/stream`: sends an audio file as a live stream and collects the
events (used by the tests, `livecap bench --streams` and scripts/session_viewers.py; also
an example of the protocol)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from livecap.sources.file import decode_blocks

FRAME_S = 0.1


@dataclass
class StreamResult:
    """What a client stream got back: its events and how it closed."""
    events: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    sent_seconds: float = 0.0
    wall_seconds: float = 0.0  # connection to close, waiting included
    waited_seconds: float = 0.0  # connection to `ready`

    @property
    def positions(self) -> list[int]:
        """The places in line the server gave while the stream waited (empty: admitted at once)."""
        return [e["position"] for e in self.events if e["type"] == "queued"]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "final"]

    @property
    def text(self) -> str:
        return " ".join(e["text"].strip() for e in self.finals)

    @property
    def stats(self) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["type"] == "stats"), None)


def pcm_frames(path: Path, silence_s: float = 1.0) -> list[bytes]:
    """The file as 100 ms frames of 16 kHz s16le, with trailing silence so its last words end."""
    audio = np.concatenate(
        [*decode_blocks(path, FRAME_S), np.zeros(int(16_000 * silence_s), np.float32)]
    )
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    step = int(16_000 * FRAME_S)
    return [pcm[i : i + step].tobytes() for i in range(0, len(pcm), step)]


async def stream_file(
    url: str,
    path: Path,
    *,
    speed: float = 1.0,
    start: dict[str, Any] | None = None,
    timeout: float = 120.0,
) -> StreamResult:
    """Stream `path` at `speed` x real time (0: as fast as possible), send the end, and collect
    every event until the server closes."""
    return await stream_frames(url, pcm_frames(path), speed=speed, start=start, timeout=timeout)


async def stream_frames(
    url: str,
    frames: list[bytes],
    *,
    speed: float = 1.0,
    start: dict[str, Any] | None = None,
    timeout: float = 120.0,
) -> StreamResult:
    """Stream 100 ms frames of 16 kHz s16le (see `pcm_frames`) like `stream_file`."""
    result = StreamResult()
    connected = time.monotonic()
    ws = await websockets.connect(url, max_size=None)
    ready = asyncio.Event()  # set by `ready`, or by the close that came instead

    async def receive() -> None:
        try:
            async for message in ws:
                event = json.loads(message)
                result.events.append(event)
                if event["type"] == "ready":
                    ready.set()
        except websockets.ConnectionClosed:
            pass
        ready.set()

    receiver = asyncio.create_task(receive())
    try:
        await ws.send(
            json.dumps(
                {"type": "start", "sample_rate": 16_000, "sample_format": "s16le", **(start or {})}
            )
        )
        await ready.wait()  # a server at capacity answers `queued` first: audio waits for its place
        t0 = time.monotonic()
        result.waited_seconds = t0 - connected
        if not receiver.done():  # closed instead of ready: nothing to send
            for index, frame in enumerate(frames):
                if speed:
                    await asyncio.sleep(max(0.0, t0 + index * FRAME_S / speed - time.monotonic()))
                await ws.send(frame)
                result.sent_seconds += len(frame) / 32_000
            await ws.send(json.dumps({"type": "end"}))
    except websockets.ConnectionClosed:  # the server closed first: its events say why
        pass
    try:
        await asyncio.wait_for(receiver, timeout)
    finally:
        try:
            await ws.close()
        except websockets.ConnectionClosed:  # websockets reports a non-1000 close here too
            pass
    result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    result.wall_seconds = time.monotonic() - connected
    return result
