"""`livecap profiles`: list the shipped profiles, or show one
fully resolved with each value's origin."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Optional

import typer

from livecap.cli import options as opt
from livecap.config import (
    ENV_PREFIX,
    FIELDS,
    SECTIONS,
    list_profiles,
    profile_description,
    resolve,
    user_config_path,
)
from livecap.errors import LivecapError

app = typer.Typer(help="Configuration profiles: list them, or show one fully resolved.")


@app.callback(invoke_without_command=True)
def list_command(ctx: typer.Context) -> None:
    """List the shipped profiles (use one with --profile NAME on any command)."""
    if ctx.invoked_subcommand is not None:
        return
    shipped = list_profiles()
    width = max(map(len, shipped), default=0)
    for name, path in shipped.items():
        typer.echo(f"{name:<{width}}  {profile_description(path)}")
    typer.echo(
        "\n`livecap profiles show NAME` prints every setting and where it comes from; --profile "
        "also takes a "
        f"TOML path. User config: {user_config_path(os.environ)} ({ENV_PREFIX}CONFIG overrides)."
    )


@app.command("show")
def show_command(
    name: Annotated[
        Optional[str],
        typer.Argument(help=f"profile name or TOML path (default: {ENV_PREFIX}PROFILE or default)"),
    ] = None,
    profile: opt.Profile = None,
    settings: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set", metavar="KEY=VALUE", help="set a key as a command-line flag would (repeatable)"
        ),
    ] = None,
) -> None:
    """Print the resolved configuration as TOML: every key,
    its value, and the layer it came from."""
    if name and profile and name != profile:
        raise LivecapError(
            f"profiles show: two profiles given ({name} and --profile {profile}); give one"
        )
    resolved = resolve(name or profile, dict(_setting(text) for text in settings or ()))
    user = user_config_path(os.environ)
    typer.echo(f"# user config: {user}{'' if user.exists() else ' (absent)'}")
    values = resolved.config.flat()
    width = min(40, max(len(f"{key} = {_toml(values[key])}") for key in FIELDS))
    for section in SECTIONS:
        typer.echo(f"\n[{section}]")
        for key, (owner, _) in FIELDS.items():
            if owner == section:
                line = f"{key} = {_toml(values[key])}"
                typer.echo(f"{line:<{width}}  # {resolved.sources[key]}")


def _setting(text: str) -> tuple[str, str]:
    """`KEY=VALUE` from `--set`; dashes in KEY may stand for underscores."""
    key, sep, value = text.partition("=")
    if not sep:
        raise LivecapError(f"--set {text}: expected KEY=VALUE")
    return key.strip().replace("-", "_"), value


def _toml(value: Any) -> str:
    """A value as TOML (None, which TOML lacks, as the empty string that reads back as none)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return json.dumps(value or "", ensure_ascii=False)
