"""The live commands: `livecap mic` (captions from a microphone) and `livecap devices`.

Imports from `livecap.cli` happen inside the commands: cli.py registers these functions.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from livecap import cli_options as opt

Device = Annotated[
    Optional[str], typer.Option(help="input device: index or name substring (see `livecap devices`)")
]
Duration = Annotated[
    Optional[float], typer.Option(min=0.1, help="stop listening after this many seconds, then finish the captions")
]


def mic_command(
    profile: opt.Profile = None,
    model: opt.Model = None,
    language: opt.Language = None,
    task: opt.Task = None,
    beam_size: opt.BeamSize = None,
    compute_type: opt.ComputeType = None,
    workers: opt.Workers = None,
    gpu: opt.Gpu = None,
    output_dir: opt.OutputDir = None,
    output_format: opt.OutputFormat = None,
    subtitle_text: opt.SubtitleText = None,
    translate_to: opt.TranslateTo = None,
    translator: opt.Translator = None,
    min_silence_ms: opt.MinSilenceMs = None,
    max_utterance_s: opt.MaxUtteranceS = None,
    interim: opt.Interim = None,
    device: Device = None,
    duration: Duration = None,
    plain: opt.Plain = False,
    jsonl: opt.Jsonl = False,
) -> None:
    """Live captions from a microphone. Ctrl-C stops; finals are journaled as they come, files written at the end."""
    from rich.markup import escape

    from livecap.api import Engine
    from livecap.cli import choose_view, errors, load_config, save_session
    from livecap.mic import MicSource
    from livecap.session import run_session
    from livecap.writers import Journal, check_output_dir

    config = load_config(
        profile, model=model, language=language, task=task, beam_size=beam_size, compute_type=compute_type,
        workers=workers, gpu=gpu, output_dir=output_dir, output_format=output_format, subtitle_text=subtitle_text,
        translate_to=translate_to, translator=translator, min_silence_ms=min_silence_ms,
        max_utterance_s=max_utterance_s, interim=interim, input_device=device,
    ).config
    out_dir = Path(config.output.output_dir)
    check_output_dir(out_dir)
    source = MicSource(config.live.input_device)
    stem = f"mic-{datetime.now():%Y%m%d-%H%M%S}"
    with Engine(config) as engine:
        journal = Journal(out_dir / f"{stem}.journal.jsonl")
        view = choose_view(engine, plain=plain, jsonl=jsonl, live=True, label=stem, duration=None)
        errors.print(
            f"[dim]listening on {escape(source.device.name)} ({source.rate} Hz), journal {journal.path}; "
            "Ctrl-C stops[/]",
            highlight=False,
            soft_wrap=True,
        )
        stream = engine.stream(source, live=True, converter=source.converter())
        result = run_session(stream, view, journal, duration=duration)
    recorded = result.stats.audio_seconds if result.stats else None
    saved = save_session(result, config, out_dir, stem, source.name, recorded)
    if result.end_reason == "interrupted":
        raise typer.Exit(130)
    if not saved:
        raise typer.Exit(1)


def devices_command() -> None:
    """List the audio input devices (for `livecap mic --device`)."""
    from rich.table import Table

    from livecap.cli import console
    from livecap.errors import LivecapError
    from livecap.mic import list_input_devices

    devices = list_input_devices()
    if not devices:
        raise LivecapError("no audio input devices found")
    table = Table("index", "name", "channels", "default rate", "default")
    for d in devices:
        table.add_row(str(d.index), d.name, str(d.channels), f"{d.default_rate:.0f} Hz", "*" if d.is_default else "")
    console.print(table)
