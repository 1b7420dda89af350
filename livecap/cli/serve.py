"""`livecap serve`: the HTTP/WebSocket server. The server package is loaded only when the command
runs (the CLI and the server never import each other; `livecap[server]` may not be installed)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from livecap.cli import options as opt

MIB = 1024 * 1024


def serve_command(
    host: Annotated[
        str, typer.Option(help="address to listen on (0.0.0.0: every interface; set --api-key)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 8000,
    api_key: Annotated[
        Optional[str], typer.Option(envvar="LIVECAP_API_KEY", help="require this key on every endpoint but /health")
    ] = None,
    max_streams: Annotated[
        Optional[int], typer.Option(min=1, help="live streams at once (default: 2 per worker)")
    ] = None,
    max_uploads: Annotated[
        Optional[int], typer.Option(min=1, help="uploads transcribed at once (default: workers)")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="largest upload (MiB)")] = 100.0,
    max_frame_kb: Annotated[float, typer.Option(min=1, help="largest WebSocket message (KiB)")] = 256.0,
    idle_timeout_s: Annotated[float, typer.Option(min=0.1, help="end a stream that sends nothing this long")] = 30.0,
    max_stream_s: Annotated[float, typer.Option(min=1, help="end a stream after this long")] = 4 * 3600.0,
    drain_s: Annotated[float, typer.Option(min=0, help="on shutdown, time for open streams' last finals")] = 10.0,
    data_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="the media library's folder [default: the user data folder, ~/.local/share/livecap/server on Linux]"
        ),
    ] = None,
    max_media: Annotated[int, typer.Option(min=1, help="files in the media library")] = 100,
    max_viewers: Annotated[int, typer.Option(min=1, help="session viewers at once")] = 1000,
    preload: Annotated[
        Optional[list[str]], typer.Option(help="load this model at start and keep it (repeatable), besides --model")
    ] = None,
    model_ttl_s: Annotated[
        float, typer.Option(min=-1, help="unload a model no request has used for this long (-1: never)")
    ] = 300.0,
    max_models: Annotated[
        int, typer.Option(min=0, help="models loaded on demand at once, --model and --preload aside (0: none)")
    ] = 2,
    profile: opt.Profile = None,
    model: opt.Model = None,
    language: opt.Language = None,
    beam_size: opt.BeamSize = None,
    compute_type: opt.ComputeType = None,
    workers: opt.Workers = None,
    gpu: opt.Gpu = None,
    initial_prompt: opt.InitialPrompt = None,
    hotwords: opt.Hotwords = None,
    word_timestamps: opt.WordTimestamps = None,
    min_silence_ms: opt.MinSilenceMs = None,
    max_utterance_s: opt.MaxUtteranceS = None,
    interim: opt.Interim = None,
) -> None:
    """Serve live captions (WebSocket /v1/stream, a browser page at /), shared sessions watched by
    many (/v1/sessions) and OpenAI-compatible transcription (/v1/audio/transcriptions). SIGTERM or
    Ctrl-C drains open streams, then exits."""
    from livecap.cli.common import warn
    from livecap.config import resolve
    from livecap.errors import LivecapError

    resolved = resolve(
        profile,
        opt.flags(
            model=model,
            language=language,
            beam_size=beam_size,
            compute_type=compute_type,
            workers=workers,
            gpu=gpu,
            initial_prompt=initial_prompt,
            hotwords=hotwords,
            word_timestamps=word_timestamps,
            min_silence_ms=min_silence_ms,
            max_utterance_s=max_utterance_s,
            interim=interim,
        ),
    )
    for warning in resolved.warnings:
        warn(warning)
    try:
        settings_module = importlib.import_module("livecap.server.settings")
        run_module = importlib.import_module("livecap.server.run")
    except ImportError as error:
        raise LivecapError(
            f"the server is not installed ({error.name} is missing): pip install 'livecap[server]'"
        ) from None
    settings = settings_module.ServerSettings(
        host=host,
        port=port,
        api_key=api_key or None,
        max_streams=max_streams,
        max_uploads=max_uploads,
        max_upload_bytes=int(max_upload_mb * MIB),
        max_frame_bytes=int(max_frame_kb * 1024),
        idle_timeout_s=idle_timeout_s,
        max_stream_s=max_stream_s,
        drain_s=drain_s,
        data_dir=data_dir,
        max_media=max_media,
        max_viewers=max_viewers,
        preload=tuple(preload or ()),
        model_ttl_s=model_ttl_s,
        max_models=max_models,
    )
    run_module.serve(resolved.config, settings)
