"""What every command shares: the consoles, one-line errors, configuration from options, the
choice of display, and writing a finished run's files."""

from __future__ import annotations

import glob
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from livecap.cli import options as opt
from livecap.config import Config, resolve
from livecap.errors import LivecapError, WriteError

if TYPE_CHECKING:
    from livecap.engine import Engine
    from livecap.pipeline.runner import Display, RunResult

console = Console()
errors = Console(stderr=True)


def report_error(message: str) -> None:
    """One line on stderr: `error: ...`."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Report an error; return the exit to raise."""
    report_error(message)
    return typer.Exit(code)


def warn(message: str) -> None:
    """One line on stderr: `warning: ...`; the run goes on."""
    errors.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def pipeline_config(options: dict[str, Any], **extra: Any) -> Config:
    """The configuration for a command's pipeline options; its warnings (a misspelt LIVECAP_
    variable) are shown, not fatal."""
    resolved = resolve(*opt.config_flags(options, **extra))
    for warning in resolved.warnings:
        warn(warning)
    return resolved.config


def choose_view(
    engine: Engine, *, plain: bool, jsonl: bool, live: bool, label: str, duration: float | None
) -> Display:
    """The display for this run: rich when stdout is a terminal, plain lines otherwise."""
    from livecap.cli.view import FileProgressView, JsonlView, LiveView, PlainView

    if jsonl:
        return JsonlView(source=label)
    if plain or not console.is_terminal:
        return PlainView()
    if live:
        # the device and compute type in use (--gpu auto may fall back to the CPU)
        backend = engine.backend
        return LiveView(console, backend.name, backend.device, backend.compute_type)
    return FileProgressView(console, label, duration)


def _rescue(
    write: Callable[[Path], list[Path]], out_dir: Path, failure: WriteError, count: int
) -> str:
    """The one error line for captions that `out_dir` would not take (a full disk): they are
    written to a new temporary folder instead when one can be, and the line says where they are."""
    problem, captions = (
        f"cannot write to {out_dir} ({failure.reason})",
        f"{count} caption{'s' * (count != 1)}",
    )
    folder = None
    try:
        folder = Path(tempfile.mkdtemp(prefix="livecap-rescued-"))
        write(folder)
    except (OSError, LivecapError):
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        return (
            f"{problem}; no other folder would take the {captions} either "
            "(they were shown on standard output)"
        )
    return f"{problem}; the {captions} went to {folder} instead"


def save_result(
    result: RunResult,
    config: Config,
    out_dir: Path,
    stem: str,
    name: str,
    duration: float | None,
    notes: dict[str, Any] | None = None,
) -> bool:
    """Write a finished run's captions (also an interrupted or failed one's) and say so on stderr,
    naming files of an earlier run that were replaced. `notes` go into the json (warnings, partial).
    False when the run found no speech, failed or was interrupted; a run that failed before
    any caption writes nothing (its error was shown already). When `out_dir` takes no files, the
    captions go to a temporary folder and a LivecapError says where."""
    from livecap.output.writers import OutputOptions, write_outputs

    problem = result.end_reason
    if not result.captions and problem is None:
        report_error(f"{name}: no speech found")
        return False
    if not result.captions and problem != "interrupted":
        return False
    before = {path.name for path in out_dir.glob(f"{glob.escape(stem)}.*")}

    def write(folder: Path) -> list[Path]:
        return write_outputs(
            result.captions,
            folder,
            stem,
            config.output.output_format,
            source=name,
            duration=duration,
            options=OutputOptions.from_config(config),
            notes=notes,
        )

    try:
        written = write(out_dir)
    except WriteError as failure:
        raise LivecapError(_rescue(write, out_dir, failure, len(result.captions))) from None
    files = ", ".join(str(p) for p in written)
    replaced = [p.name for p in written if p.name in before]
    files += f" (replacing {len(replaced)} existing: {', '.join(replaced)})" if replaced else ""
    if problem is None and not result.errors:
        errors.print(f"[dim]wrote {escape(files)}[/]", highlight=False, soft_wrap=True)
        return True
    note = (
        "interrupted" if problem == "interrupted" else f"incomplete ({problem or result.errors[0]})"
    )
    errors.print(
        f"[yellow]{escape(name)}: {escape(note)}; wrote {len(result.captions)} captions "
        "transcribed so far "
        f"to {escape(files)}[/]",
        highlight=False,
        soft_wrap=True,
    )
    return False
