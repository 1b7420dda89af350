"""What a server allows: its address, its key and its limits (one frozen object, no globals)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs


def default_max_streams(workers: int) -> int:
    """Two live streams per ASR worker. A live stream needs a worker for its finals (tiny.en on a
    CPU: about 0.1 s of work per second of speech) and for interims, which the pool sheds under
    load; two per worker keeps final latency near a single stream's, measured with
    `livecap bench --streams`. A faster machine or model can take more: set --max-streams."""
    return 2 * workers


def default_data_dir() -> Path:
    """Where the media library lives: the user's data folder (platformdirs: ~/.local/share/livecap/server
    on Linux), or a fresh temporary folder when that cannot be created."""
    folder = platformdirs.user_data_path("livecap") / "server"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return Path(tempfile.mkdtemp(prefix="livecap-server-"))
    return folder


@dataclass(frozen=True)
class ServerSettings:
    """How `livecap serve` listens and what it allows."""
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # None: no authentication (the default address is loopback only)
    max_streams: int | None = None  # None: default_max_streams(workers)
    max_uploads: int | None = None  # concurrent uploads being transcribed; None: the number of workers
    max_upload_bytes: int = 100 * 1024 * 1024
    max_frame_bytes: int = 256 * 1024  # one WebSocket message (about 8 s of 16 kHz s16le)
    idle_timeout_s: float = 30.0  # a stream that sends nothing for this long is ended
    max_stream_s: float = 4 * 3600.0  # a stream is ended after this long
    send_queue: int = 64  # events waiting to be sent to one client before interims are dropped
    max_unsent_finals: int = 1000  # a client this far behind is disconnected (finals are never dropped)
    drain_s: float = 10.0  # on shutdown, how long open streams may take to send their last finals
    data_dir: Path | None = None  # the media library's folder; None: default_data_dir()
    max_media: int = 100  # files in the media library
    max_viewers: int = 1000  # viewers of all sessions at once
    viewer_buffer: int = 256  # events waiting to be sent to one viewer before it is dropped (rejoin to catch up)
    history_finals: int = 1000  # finals a session keeps for late joiners
    ended_sessions: int = 20  # ended sessions still listed (with their history) for late viewers
    ping_s: float = 20.0  # WebSocket ping interval and timeout: a client that stops answering is closed
    preload: tuple[str, ...] = ()  # models loaded at start and kept, besides the default one
    model_ttl_s: float = 300.0  # a model no request uses is unloaded after this long; -1: never
    max_models: int = 2  # models loaded on demand at once (the default and preloaded ones aside); 0: none
    model_wait_s: float = 120.0  # how long a request waits for a model slot before a 503
