"""The live commands: `livecap mic` (captions from a microphone) and `livecap devices`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from livecap.cli import options as opt

InputDevice = Annotated[
    Optional[str],
    typer.Option(
        help="microphone: index or name substring (see `livecap devices`) [default: the system's]",
        metavar="DEVICE",
    ),
]
Duration = Annotated[
    Optional[float],
    typer.Option(
        min=0.1,
        metavar="S",
        help="stop listening after this many seconds, then finish the captions",
    ),
]


Publish = Annotated[
    Optional[str],
    typer.Option(
        metavar="URL",
        help="feed a `livecap serve` session instead: http://HOST:PORT (a new session) or "
        "http://HOST:PORT/SESSION; the server transcribes, others watch",
    ),
]

PublishAudio = Annotated[
    str,
    typer.Option(
        "--publish-audio",
        metavar="opus|pcm",
        help="what --publish sends: opus (Ogg Opus at 32 kbit/s) "
        "or pcm (s16le at the microphone's rate)",
    ),
]


@opt.pipeline_command
def mic_command(
    input_device: InputDevice = None,
    duration: Duration = None,
    publish: Publish = None,
    publish_audio: PublishAudio = "opus",
    options: dict | None = None,
) -> None:
    """Live captions from a microphone. Ctrl-C stops; finals
    are journaled as they come, files written at the end."""
    assert options is not None
    if publish is not None:
        from livecap.cli.watch import publish_microphone

        return publish_microphone(
            publish, input_device, duration, options["plain"], options["jsonl"], publish_audio
        )
    from rich.markup import escape

    from livecap.cli.common import choose_view, errors, pipeline_config, save_result
    from livecap.cli.signals import counting_stop_signals
    from livecap.engine import Engine
    from livecap.output.atomic import check_writable
    from livecap.output.writers import Journal
    from livecap.pipeline.runner import run_stream
    from livecap.sources.mic import MicSource

    config = pipeline_config(options, input_device=input_device)
    plain, jsonl = options["plain"], options["jsonl"]
    out_dir = Path(config.output.output_dir)
    check_writable(out_dir)
    source = MicSource(config.live.input_device)
    stem = f"mic-{datetime.now():%Y%m%d-%H%M%S}"
    with Engine(config) as engine, counting_stop_signals() as stop_requests:
        journal = Journal(out_dir / f"{stem}.journal.jsonl")
        view = choose_view(engine, plain=plain, jsonl=jsonl, live=True, label=stem, duration=None)
        errors.print(
            f"[dim]listening on {escape(source.device.name)} ({source.rate} Hz), journal "
            f"{journal.path}; "
            "Ctrl-C stops[/]",
            highlight=False,
            soft_wrap=True,
        )
        stream = engine.stream(source, live=True, converter=source.converter())
        result = run_stream(stream, view, journal, duration=duration, stop_requests=stop_requests)
    recorded = result.stats.audio_seconds if result.stats else None
    saved = save_result(result, config, out_dir, stem, source.name, recorded)
    if stop_requests.count:
        raise typer.Exit(stop_requests.exit_code)
    if not saved:
        raise typer.Exit(1)


def devices_command() -> None:
    """List the audio input devices (for `livecap mic --input-device`)."""
    from rich.table import Table

    from livecap.cli.common import console
    from livecap.errors import LivecapError
    from livecap.sources.mic import list_input_devices

    devices = list_input_devices()
    if not devices:
        raise LivecapError("no audio input devices found")
    table = Table("index", "name", "channels", "default rate", "default")
    for d in devices:
        table.add_row(
            str(d.index),
            d.name,
            str(d.channels),
            f"{d.default_rate:.0f} Hz",
            "*" if d.is_default else "",
        )
    console.print(table)
