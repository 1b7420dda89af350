"""`livecap serve`: the HTTP/WebSocket server. The server package is loaded only when the command
runs (the CLI and the server never import each other; `livecap[server]` may not be installed). Its
settings are the [server] section of the configuration: these flags, LIVECAP_<KEY>, a profile or the
user config file; the API key is a secret and comes from --api-key or LIVECAP_API_KEY only."""

from __future__ import annotations

import importlib
from typing import Annotated, Optional

import typer

from livecap.cli import options as opt
from livecap.cli.options import setting

Host = Annotated[
    Optional[str],
    setting(
        "host", "address to listen on (0.0.0.0: every interface; set --api-key)", metavar="ADDRESS"
    ),
]
Port = Annotated[Optional[int], setting("port", "TCP port", metavar="N")]
ApiKey = Annotated[
    Optional[str],
    typer.Option(
        envvar="LIVECAP_API_KEY", metavar="KEY",
        help="require this key on every endpoint but /health, /ready and the page's scripts",
    ),
]
MaxStreams = Annotated[
    Optional[str],
    setting(
        "max_streams",
        "live streams and sessions at once (auto: from the measured load)",
        metavar="auto|N",
    ),
]
MaxWaitS = Annotated[
    Optional[float],
    setting(
        "max_wait_s",
        "how long a stream, session or upload waits for a place (0: refuse)",
        metavar="S",
    ),
]
MaxRssMb = Annotated[
    Optional[int],
    setting(
        "max_rss_mb",
        "memory budget: above it interims are shed, new work waits (none: RAM / 2)",
        metavar="MB",
    ),
]
MaxUploads = Annotated[
    Optional[int],
    setting("max_uploads", "uploads transcribed at once (none: workers)", metavar="N"),
]
MaxUploadMb = Annotated[
    Optional[float], setting("max_upload_mb", "largest upload (MiB)", metavar="MB")
]
MaxFrameKb = Annotated[
    Optional[float], setting("max_frame_kb", "largest WebSocket message (KiB)", metavar="KB")
]
IdleTimeoutS = Annotated[
    Optional[float],
    setting("idle_timeout_s", "end a stream that sends nothing this long", metavar="S"),
]
MaxStreamS = Annotated[
    Optional[float], setting("max_stream_s", "end a stream after this long", metavar="S")
]
DrainS = Annotated[
    Optional[float],
    setting("drain_s", "on shutdown, time for open streams' last finals", metavar="S"),
]
DataDir = Annotated[
    Optional[str],
    setting(
        "data_dir",
        "the media library's folder (none: ~/.local/share/livecap/server on Linux)",
        metavar="DIR",
    ),
]
MaxMedia = Annotated[Optional[int], setting("max_media", "files in the media library", metavar="N")]
MaxViewers = Annotated[
    Optional[int], setting("max_viewers", "session viewers at once", metavar="N")
]
RedisUrl = Annotated[
    Optional[str],
    setting(
        "redis_url",
        "share sessions and the media index with other replicas through this Redis "
        "(redis://HOST:PORT/DB); --data-dir must then be a folder they all share",
        metavar="URL",
    ),
]
Replica = Annotated[
    Optional[str],
    setting("replica", "this replica's name in the cluster (default host:port)", metavar="NAME"),
]
LeaseS = Annotated[
    Optional[float],
    setting(
        "lease_s",
        "with --redis-url: a dead replica's sessions are taken over after this",
        metavar="S",
    ),
]
Preload = Annotated[
    Optional[list[str]],
    setting(
        "preload",
        "load this model at start and keep it (repeatable), besides --model",
        metavar="NAME",
    ),
]
ModelTtlS = Annotated[
    Optional[float],
    setting(
        "model_ttl_s", "unload a model no request has used for this long (-1: never)", metavar="S"
    ),
]
MaxModels = Annotated[
    Optional[int],
    setting(
        "max_models",
        "models loaded on demand at once, --model and --preload aside (0: none)",
        metavar="N",
    ),
]


def _serve_options(
    host: Host = None,
    port: Port = None,
    max_streams: MaxStreams = None,
    max_wait_s: MaxWaitS = None,
    max_rss_mb: MaxRssMb = None,
    max_uploads: MaxUploads = None,
    max_upload_mb: MaxUploadMb = None,
    max_frame_kb: MaxFrameKb = None,
    idle_timeout_s: IdleTimeoutS = None,
    max_stream_s: MaxStreamS = None,
    drain_s: DrainS = None,
    data_dir: DataDir = None,
    max_media: MaxMedia = None,
    max_viewers: MaxViewers = None,
    redis_url: RedisUrl = None,
    replica: Replica = None,
    lease_s: LeaseS = None,
    preload: Preload = None,
    model_ttl_s: ModelTtlS = None,
    max_models: MaxModels = None,
    profile: opt.Profile = None,
    model: opt.Model = None,
    language: opt.Language = None,
    beam_size: opt.BeamSize = None,
    compute_type: opt.ComputeType = None,
    workers: opt.Workers = None,
    device: opt.Device = None,
    gpu: opt.Gpu = None,
    initial_prompt: opt.InitialPrompt = None,
    hotwords: opt.Hotwords = None,
    word_timestamps: opt.WordTimestamps = None,
    min_silence_ms: opt.MinSilenceMs = None,
    max_utterance_s: opt.MaxUtteranceS = None,
    min_pause_ms: opt.MinPauseMs = None,
    interim: opt.Interim = None,
) -> None:
    """The options of `livecap serve` that are settings: the [server] section's and the engine's."""


@opt.options_from(_serve_options)
def serve_command(api_key: ApiKey = None, options: dict | None = None) -> None:
    """Serve live captions (WebSocket /v1/stream, a browser page at /), shared sessions watched by
    many (/v1/sessions) and OpenAI-compatible transcription (/v1/audio/transcriptions). SIGTERM or
    Ctrl-C drains open streams, then exits."""
    from livecap.cli.common import warn
    from livecap.config import resolve
    from livecap.errors import LivecapError

    assert options is not None
    resolved = resolve(*opt.config_flags(options))
    for warning in resolved.warnings:
        warn(warning)
    try:
        run_module = importlib.import_module("livecap.server.run")
    except ImportError as error:
        raise LivecapError(
            f"the server is not installed ({error.name} is missing): pip install 'livecap[server]'"
        ) from None
    run_module.serve(resolved.config, api_key or None)
