"""The `livecap` command tree: one module per command, conventions shared by all (-h, --version,
shell completion), and one-line errors for known failures."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from livecap.cli import models as cli_models
from livecap.cli import options as opt
from livecap.cli import profiles as cli_profiles
from livecap.cli.bench import bench_command
from livecap.cli.common import fail
from livecap.cli.file import file_command
from livecap.cli.mic import devices_command, mic_command
from livecap.cli.serve import serve_command
from livecap.cli.watch import watch_command
from livecap.errors import LivecapError

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    # plain help: metavars show choices and kinds of value, help ends with the default
    rich_markup_mode=None,
    help="Real-time speech transcription and translation in the terminal.",
)
app.command("file")(file_command)
app.add_typer(cli_models.app, name="models")
app.add_typer(cli_profiles.app, name="profiles")
app.command("bench")(bench_command)
app.command("mic")(mic_command)
app.command("devices")(devices_command)
app.command("serve")(serve_command)
app.command("watch")(watch_command)


def _print_version(given: bool) -> None:
    if given:
        from livecap import __version__

        print(f"livecap {__version__}")
        raise typer.Exit()


@app.callback()
def _common(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Real-time speech transcription and translation in the terminal."""


def run() -> None:
    """Run the command line; a known failure is one line on stderr (exit 2)."""
    try:
        app(args=opt.gpu_argv(sys.argv[1:]), prog_name="livecap", standalone_mode=True)
    except LivecapError as error:
        raise SystemExit(fail(str(error)).exit_code) from None
