"""`livecap file`: transcribe (and translate) media files, or recover a killed run from its journal.

Each file stands alone: one that cannot be read, transcribed or written is reported in one line
and the others go on; the exit code says at the end. Every final is journaled as it comes
(`<stem>.journal.jsonl`), so a killed run loses nothing: `livecap file --recover` turns the journal
into the caption files.
"""

from __future__ import annotations

import glob
import stat
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from livecap.cli import options as opt
from livecap.cli.common import choose_view, pipeline_config, report_error, save_result, warn
from livecap.cli.signals import counting_stop_signals
from livecap.errors import LivecapError

if TYPE_CHECKING:
    from livecap.cli.signals import StopRequests
    from livecap.config import Config
    from livecap.engine import Engine
    from livecap.sources.file import FileSource

JOURNAL_SUFFIX = ".journal.jsonl"


def _is_stream(arg: str) -> bool:
    """`-`, or a pipe or terminal named as a path (`/dev/stdin`, a FIFO): read once, so spooled."""
    if arg == "-":
        return True
    try:
        mode = Path(arg).stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _spool_input(arg: str, folder: Path) -> Path:
    from livecap.sources.file import spool

    if arg == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise LivecapError(
                "-: standard input is a terminal; pipe audio into it (livecap file - < talk.mp3)"
            )
        return spool(sys.stdin.buffer, folder)
    try:
        with open(arg, "rb") as stream:
            return spool(stream, folder)
    except OSError as error:
        raise LivecapError(f"{arg}: cannot read ({error.strerror or error})") from None


def _temporary_folder() -> tempfile.TemporaryDirectory[str]:
    try:
        return tempfile.TemporaryDirectory(prefix="livecap-input-")
    except OSError as error:  # /tmp full or read-only
        raise LivecapError(
            f"no temporary folder to store piped input in ({error.strerror or error})"
        ) from None


def _stems(names: list[str], out_dir: Path, overwrite: bool) -> list[str]:
    """Output stems, never one twice in a run; with `overwrite` off, none an earlier run used."""
    from livecap.output.atomic import unique_stems

    def used(stem: str) -> bool:
        return not overwrite and any(out_dir.glob(f"{glob.escape(stem)}.*"))

    return unique_stems(names, used)


def _recover(journals: list[Path], config: Config, out_dir: Path) -> int:
    """Write the caption files from journals left by killed runs; returns how many failed."""
    from livecap.output.writers import OutputOptions, read_journal, write_outputs

    failed = 0
    for journal in journals:
        try:
            if not journal.name.endswith(JOURNAL_SUFFIX):
                raise LivecapError(f"{journal}: --recover takes journals (<stem>{JOURNAL_SUFFIX})")
            captions = read_journal(journal)
            if not captions:
                raise LivecapError(f"{journal}: holds no captions")
            stem = journal.name.removesuffix(JOURNAL_SUFFIX)
            written = write_outputs(
                captions,
                out_dir,
                stem,
                config.output.output_format,
                source=str(journal),
                duration=captions[-1].end,
                options=OutputOptions.from_config(config),
                notes={"partial": True, "recovered_from": str(journal)},
            )
            journal.unlink()
            warn(
                f"{journal}: recovered {len(captions)} captions (up to {captions[-1].end:.1f} s) "
                "into "
                f"{', '.join(map(str, written))}; journal removed"
            )
        except LivecapError as error:
            report_error(str(error))
            failed += 1
    return failed


def _transcribe_one(
    engine: Engine, config: Config, source: FileSource, name: str, stem: str, out_dir: Path,
    options: dict[str, Any], stop_requests: StopRequests,
) -> bool:
    """Transcribe one file, journaling each final, and write its files. False when the captions do
    not cover the file: truncated, no speech, an error, an interruption (skipped damage is warned
    about and counted in the json, but the rest of the file is there). The journal goes once the
    files are written, and stays when they are not (or under --realtime, where it is a record)."""
    from livecap.output.writers import Journal
    from livecap.pipeline.runner import run_stream

    journal = Journal(out_dir / f"{stem}{JOURNAL_SUFFIX}")
    view = choose_view(
        engine,
        plain=options["plain"],
        jsonl=options["jsonl"],
        live=source.realtime,
        label=stem,
        duration=source.duration,
    )
    result = run_stream(
        engine.stream(source, live=source.realtime), view, journal, stop_requests=stop_requests
    )
    if config.diarize.diarize and result.captions:
        from livecap.diarize.files import diarize_result

        result = diarize_result(result, source.path, config, source.track)
    report = source.report
    warnings = report.warnings(name)
    for line in warnings:
        warn(line)
    partial = result.end_reason is not None or bool(result.errors)
    # a partial run covers the audio up to its last caption; a whole one, all the audio decoded
    duration = round(
        max((c.end for c in result.captions), default=0.0) if partial else report.duration_s, 3
    )
    notes = {"partial": partial, "warnings": warnings, **report.to_dict()}
    saved = save_result(result, config, out_dir, stem, name, duration, notes)
    if saved and journal.error:  # the disk took the files at the end, not the journal on the way
        warn(f"{journal.error}; the captions were kept in memory and written")
    if saved and not source.realtime:
        journal.path.unlink(missing_ok=True)
    return saved and not report.truncated


Files = Annotated[
    list[str],
    typer.Argument(
        help="audio or video files; - reads standard input", show_default=False, metavar="FILES..."
    ),
]
Realtime = Annotated[bool, typer.Option(help="replay at 1x through the live pipeline")]
AudioTrack = Annotated[
    int, typer.Option(min=0, metavar="N", help="which audio track of each file, from 0")
]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite/--no-overwrite",
        help="replace the files of an earlier run, or name new ones x-2",
    ),
]
Recover = Annotated[
    bool,
    typer.Option(
        help="the FILES are journals a killed run left (*.journal.jsonl): write their caption files"
    ),
]


@opt.pipeline_command
def file_command(
    paths: Files,
    realtime: Realtime = False,
    audio_track: AudioTrack = 0,
    overwrite: Overwrite = True,
    recover: Recover = False,
    options: dict | None = None,
) -> None:
    """Transcribe (and translate) files; captions print as they complete and files are written."""
    from livecap.engine import Engine
    from livecap.output.atomic import check_writable
    from livecap.sources.file import FileSource

    assert options is not None
    config = pipeline_config(options)
    out_dir = Path(config.output.output_dir)
    check_writable(out_dir)
    if recover:
        if _recover([Path(p) for p in paths], config, out_dir):
            raise typer.Exit(1)
        return
    failed = 0
    sources: list[tuple[FileSource, str]] = []  # each source and the name the user gave it
    with ExitStack() as cleanup:
        # made for the first piped input only: a full /tmp fails just those
        spool_dir: Path | None = None
        for arg in paths:
            path = Path(arg)
            try:
                if _is_stream(arg):
                    spool_dir = spool_dir or Path(cleanup.enter_context(_temporary_folder()))
                    path = _spool_input(arg, spool_dir)
                sources.append((FileSource(path, realtime=realtime, track=audio_track), arg))
            except LivecapError as error:  # named as the user named it, not by its spool file
                report_error(str(error).replace(str(path), "standard input" if arg == "-" else arg))
                failed += 1
        if not sources:
            raise typer.Exit(1)
        if config.diarize.diarize:
            from livecap.diarize.model import shared_model

            shared_model()  # the extra is missing: one line before any work
        stems = _stems(
            ["stdin" if arg == "-" else Path(arg).stem for _, arg in sources], out_dir, overwrite
        )
        # signals count from before the model loads: a stop then (even inside an extension's import)
        # ends the run cleanly once the load is done, before any file starts
        with counting_stop_signals() as stop_requests, Engine(config) as engine:
            for (source, name), stem in zip(sources, stems):
                if stop_requests.count:
                    warn(
                        f"interrupted before {name} started: it and any files after it were not "
                        "transcribed"
                    )
                    break
                try:
                    ok = _transcribe_one(
                        engine, config, source, name, stem, out_dir, options, stop_requests
                    )
                except LivecapError as error:  # this file's outputs could not be written: go on
                    report_error(str(error))
                    ok = False
                failed += not ok
    if stop_requests.count:
        raise typer.Exit(stop_requests.exit_code)
    if failed:
        raise typer.Exit(1)
