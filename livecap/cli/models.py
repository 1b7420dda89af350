"""`livecap models`: list the Whisper models and translation pairs available offline, with
where each came from; pull faster-whisper models from the hub; install Argos packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from livecap.cli import options as opt
from livecap.config import resolve
from livecap.errors import LivecapError

app = typer.Typer(
    help="Models available offline: list them, pull a Whisper model, "
    "or install a translation package."
)
console = Console()


@app.callback(invoke_without_command=True)
def list_command(ctx: typer.Context) -> None:
    """List the models available offline, where they live, and the installed translation pairs."""
    if ctx.invoked_subcommand is not None:
        return
    from livecap.asr.models import cache_dir, local_models

    table = Table("model", "languages", "from (and where it lives)")
    table.columns[2].overflow = "fold"  # a path cut short is no use
    for entry in local_models():
        where = (
            escape(str(entry.path))
            if entry.path is not None
            else "[red]missing: install the package[/]"
        )
        table.add_row(
            escape(entry.name),
            "multilingual" if entry.multilingual else "English only",
            f"{escape(entry.source)}\n[dim]{where}[/]",
        )
    console.print(table)
    console.print(f"cache: {cache_dir()}  (LIVECAP_CACHE_DIR overrides)", highlight=False)
    console.print(
        "Other faster-whisper names and hub ids: livecap models pull NAME (online), then --model "
        "NAME.",
        style="dim",
    )
    console.print(
        "\ntranslation: whisper (speech → en) with any multilingual model", highlight=False
    )
    _list_argos_pairs()


def _list_argos_pairs() -> None:
    from livecap.translators.argos import list_installed_pairs

    try:
        pairs = list_installed_pairs()
    except LivecapError as error:  # the optional extra is not installed
        console.print(f"translation: argos unavailable ({error})", style="dim", highlight=False)
        return
    listed = ", ".join(f"{a} → {b}" for a, b in pairs) or "none installed"
    console.print(f"translation: argos {listed}", highlight=False)
    console.print(
        "Install one: livecap models install-translation FILE.argosmodel (or --from LANG --to "
        "LANG)",
        style="dim",
    )


@app.command("pull")
def pull_command(
    name: Annotated[
        str,
        typer.Argument(
            help="a faster-whisper name (small, large-v3, ...) or a hub id", show_default=False
        ),
    ],
) -> None:
    """Download a Whisper model from the Hugging Face hub into its cache, for offline use later."""
    from livecap.asr.models import pull

    console.print(f"pulled {name} into {pull(name)}", highlight=False)


@app.command("install-translation")
def install_translation_command(
    package: Annotated[
        Optional[Path], typer.Argument(help="an .argosmodel file", show_default=False)
    ] = None,
    from_code: Annotated[
        Optional[str], typer.Option("--from", help="source language code (index install)")
    ] = None,
    to_code: Annotated[
        Optional[str], typer.Option("--to", help="target language code (index install)")
    ] = None,
    argos_index_url: Annotated[
        Optional[str], typer.Option(help="Argos package index (JSON) URL")
    ] = None,
    profile: opt.Profile = None,
) -> None:
    """Install an Argos Translate package from a file, or the
    newest --from/--to one from the package index."""
    from livecap.translators.argos import install_from_index, install_package_file

    if package is not None:
        if from_code or to_code:
            raise LivecapError("install-translation takes a FILE or --from/--to, not both")
        pair = install_package_file(package)
    elif from_code and to_code:
        index_url = resolve(
            profile, opt.flags(argos_index_url=argos_index_url)
        ).config.translate.argos_index_url
        pair = install_from_index(from_code, to_code, index_url)
    else:
        raise LivecapError("install-translation needs an .argosmodel FILE, or both --from and --to")
    console.print(f"installed translation {pair}", highlight=False)
