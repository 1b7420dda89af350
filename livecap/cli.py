"""The `livecap` command line: a thin layer over the library API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from livecap import cli_options as opt
from livecap.config import Config, Resolved, resolve
from livecap.errors import LivecapError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Real-time speech transcription and translation in the terminal.",
)
console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error on stderr; return the exit to raise."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_config(profile: str | None, **given: object) -> Resolved:
    return resolve(profile, opt.flags(**given))


def choose_view(config: Config, *, plain: bool, jsonl: bool, live: bool, label: str, duration: float | None):  # noqa: ANN201
    """The display for this run: rich when stdout is a terminal, plain lines otherwise."""
    from livecap.view import FileProgressView, JsonlView, LiveView, PlainView

    if jsonl:
        return JsonlView()
    if plain or not console.is_terminal:
        return PlainView()
    if live:
        return LiveView(console, config.asr.model, config.asr.device, config.asr.compute_type)
    return FileProgressView(console, label, duration)


@app.command("file")
def file_command(
    paths: Annotated[list[Path], typer.Argument(help="audio or video files", show_default=False)],
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
    realtime: Annotated[bool, typer.Option(help="replay at 1x through the live pipeline")] = False,
    plain: opt.Plain = False,
    jsonl: opt.Jsonl = False,
) -> None:
    """Transcribe (and translate) files; captions print as they complete and files are written."""
    from livecap.api import Engine
    from livecap.capture import FileSource
    from livecap.session import run_session
    from livecap.writers import Journal, check_output_dir, write_outputs

    config = load_config(
        profile, model=model, language=language, task=task, beam_size=beam_size, compute_type=compute_type,
        workers=workers, gpu=gpu, output_dir=output_dir, output_format=output_format, subtitle_text=subtitle_text,
        translate_to=translate_to, translator=translator, min_silence_ms=min_silence_ms,
        max_utterance_s=max_utterance_s, interim=interim,
    ).config
    out_dir = Path(config.output.output_dir)
    check_output_dir(out_dir)
    sources: list[FileSource] = []
    failed = 0
    for path in paths:
        try:
            sources.append(FileSource(path, realtime=realtime))
        except LivecapError as error:
            errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            failed += 1
    if not sources:
        raise typer.Exit(1)
    interrupted = False
    with Engine(config) as engine:
        for source in sources:
            stem = Path(source.name).stem
            journal = Journal(out_dir / f"{stem}.journal.jsonl") if realtime else None
            view = choose_view(config, plain=plain, jsonl=jsonl, live=realtime, label=stem, duration=source.duration)
            result = run_session(engine.stream(source, live=realtime), view, journal)
            problem = result.end_reason
            if not result.captions and problem is None:
                errors.print(f"[bold red]error:[/] {source.name}: no speech found", highlight=False, soft_wrap=True)
                failed += 1
                continue
            written = write_outputs(
                result.captions, out_dir, stem, config.output.output_format, source=source.name,
                duration=source.duration, subtitle=config.output.subtitle_text,
            )
            if problem is not None or result.errors:
                failed += 1
                note = "interrupted" if problem == "interrupted" else f"incomplete ({problem or result.errors[0]})"
                errors.print(
                    f"[yellow]{source.name}: {note}; wrote {len(result.captions)} captions transcribed so far "
                    f"to {', '.join(str(p) for p in written)}[/]",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                errors.print(f"[dim]wrote {', '.join(str(p) for p in written)}[/]", highlight=False, soft_wrap=True)
            if problem == "interrupted":
                interrupted = True
                break
    if interrupted:
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


@app.command("models")
def models_command() -> None:
    """List the models available offline, and where they live."""
    from livecap.models import cache_dir, local_models

    table = Table("model", "multilingual", "status", "location", "from")
    for entry in local_models():
        installed = entry.path is not None
        table.add_row(
            entry.name,
            "yes" if entry.multilingual else "no",
            "[green]installed[/]" if installed else "[red]missing[/]",
            str(entry.path) if installed else "-",
            entry.source,
        )
    console.print(table)
    console.print(f"cache: {cache_dir()}  (LIVECAP_CACHE_DIR overrides)", highlight=False)
    console.print("Other faster-whisper names and hub ids download when online.", style="dim")


def main() -> None:
    """Entry point: one-line errors for known failures, exit 130 on Ctrl-C."""
    try:
        app(args=opt.gpu_argv(sys.argv[1:]), prog_name="livecap", standalone_mode=True)
    except LivecapError as error:
        raise SystemExit(fail(str(error)).exit_code) from None
    except KeyboardInterrupt:
        errors.print("interrupted")
        raise SystemExit(130) from None
