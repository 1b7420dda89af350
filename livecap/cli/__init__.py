"""The `livecap` command line: a thin layer over the library, one module per command."""

from __future__ import annotations

import sys

import typer

from livecap.cli import models as cli_models
from livecap.cli import options as opt
from livecap.cli import profiles as cli_profiles
from livecap.cli.bench import bench_command
from livecap.cli.common import errors, fail
from livecap.cli.file import file_command
from livecap.cli.mic import devices_command, mic_command
from livecap.cli.serve import serve_command
from livecap.errors import LivecapError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Real-time speech transcription and translation in the terminal.",
)
app.command("file")(file_command)
app.add_typer(cli_models.app, name="models")
app.add_typer(cli_profiles.app, name="profiles")
app.command("bench")(bench_command)
app.command("mic")(mic_command)
app.command("devices")(devices_command)
app.command("serve")(serve_command)


def main() -> None:
    """Entry point: one-line errors for known failures, exit 130 on Ctrl-C."""
    try:
        app(args=opt.gpu_argv(sys.argv[1:]), prog_name="livecap", standalone_mode=True)
    except LivecapError as error:
        raise SystemExit(fail(str(error)).exit_code) from None
    except KeyboardInterrupt:
        errors.print("interrupted")
        raise SystemExit(130) from None
