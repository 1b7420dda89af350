"""`livecap file`: transcribe (and translate) media files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from livecap.cli import options as opt
from livecap.cli.common import choose_view, report_error, save_session
from livecap.cli.signals import counting_stop_signals
from livecap.config import resolve
from livecap.errors import LivecapError


@opt.pipeline_command
def file_command(
    paths: Annotated[list[Path], typer.Argument(help="audio or video files", show_default=False)],
    realtime: Annotated[bool, typer.Option(help="replay at 1x through the live pipeline")] = False,
    options: dict | None = None,
) -> None:
    """Transcribe (and translate) files; captions print as they complete and files are written."""
    from livecap.engine import Engine
    from livecap.output.writers import Journal, check_output_dir
    from livecap.pipeline.session import run_session
    from livecap.sources.file import FileSource

    assert options is not None
    config = resolve(*opt.config_flags(options)).config
    plain, jsonl = options["plain"], options["jsonl"]
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
    with Engine(config) as engine, counting_stop_signals() as stop_requests:
        for source in sources:
            stem = Path(source.name).stem
            journal = Journal(out_dir / f"{stem}.journal.jsonl") if realtime else None
            view = choose_view(engine, plain=plain, jsonl=jsonl, live=realtime, label=stem, duration=source.duration)
            result = run_session(engine.stream(source, live=realtime), view, journal, stop_requests=stop_requests)
            if not save_session(result, config, out_dir, stem, source.name, source.duration):
                failed += 1
            if result.end_reason == "interrupted":
                break
    if stop_requests.count:
        raise typer.Exit(stop_requests.exit_code)
    if failed:
        raise typer.Exit(1)
