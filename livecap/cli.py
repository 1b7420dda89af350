"""The `livecap` command line: a thin layer over the library API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from livecap import cli_models
from livecap import cli_options as opt
from livecap import cli_profiles
from livecap.bench import bench_command
from livecap.cli_live import devices_command, mic_command
from livecap.config import Config, Resolved, resolve
from livecap.errors import LivecapError

if TYPE_CHECKING:
    from livecap.api import Engine
    from livecap.session import SessionResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Real-time speech transcription and translation in the terminal.",
)
console = Console()
errors = Console(stderr=True)


def report_error(message: str) -> None:
    """One line on stderr: `error: ...`."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Report an error; return the exit to raise."""
    report_error(message)
    return typer.Exit(code)


def load_config(profile: str | None, **given: object) -> Resolved:
    return resolve(profile, opt.flags(**given))


def choose_view(engine: Engine, *, plain: bool, jsonl: bool, live: bool, label: str, duration: float | None):  # noqa: ANN201
    """The display for this run: rich when stdout is a terminal, plain lines otherwise."""
    from livecap.view import FileProgressView, JsonlView, LiveView, PlainView

    if jsonl:
        return JsonlView()
    if plain or not console.is_terminal:
        return PlainView()
    if live:
        backend = engine.backend  # the device and compute type in use (--gpu auto may fall back to the CPU)
        return LiveView(console, backend.name, backend.device, backend.compute_type)
    return FileProgressView(console, label, duration)


def save_session(
    result: SessionResult, config: Config, out_dir: Path, stem: str, name: str, duration: float | None
) -> bool:
    """Write a finished session's captions (also an interrupted or failed one's) and say so on stderr.
    False when the session found no speech, failed or was interrupted."""
    from livecap.writers import write_outputs

    problem = result.end_reason
    if not result.captions and problem is None:
        report_error(f"{name}: no speech found")
        return False
    written = write_outputs(
        result.captions, out_dir, stem, config.output.output_format, source=name,
        duration=duration, subtitle=config.output.subtitle_text,
    )
    if problem is None and not result.errors:
        errors.print(f"[dim]wrote {', '.join(str(p) for p in written)}[/]", highlight=False, soft_wrap=True)
        return True
    note = "interrupted" if problem == "interrupted" else f"incomplete ({problem or result.errors[0]})"
    errors.print(
        f"[yellow]{escape(name)}: {escape(note)}; wrote {len(result.captions)} captions transcribed so far "
        f"to {', '.join(str(p) for p in written)}[/]",
        highlight=False,
        soft_wrap=True,
    )
    return False


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
    from livecap.writers import Journal, check_output_dir

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
            report_error(str(error))
            failed += 1
    if not sources:
        raise typer.Exit(1)
    interrupted = False
    with Engine(config) as engine:
        for source in sources:
            stem = Path(source.name).stem
            journal = Journal(out_dir / f"{stem}.journal.jsonl") if realtime else None
            view = choose_view(engine, plain=plain, jsonl=jsonl, live=realtime, label=stem, duration=source.duration)
            result = run_session(engine.stream(source, live=realtime), view, journal)
            if not save_session(result, config, out_dir, stem, source.name, source.duration):
                failed += 1
            if result.end_reason == "interrupted":
                interrupted = True
                break
    if interrupted:
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


app.add_typer(cli_models.app, name="models")


app.add_typer(cli_profiles.app, name="profiles")
app.command("bench")(bench_command)
app.command("mic")(mic_command)
app.command("devices")(devices_command)


def main() -> None:
    """Entry point: one-line errors for known failures, exit 130 on Ctrl-C."""
    try:
        app(args=opt.gpu_argv(sys.argv[1:]), prog_name="livecap", standalone_mode=True)
    except LivecapError as error:
        raise SystemExit(fail(str(error)).exit_code) from None
    except KeyboardInterrupt:
        errors.print("interrupted")
        raise SystemExit(130) from None
