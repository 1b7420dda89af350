"""The `livecap` command line: a thin layer over the library (the commands are in `livecap.cli.commands`).

This module loads nothing heavy, so that Ctrl-C at any moment, even while the command line is
still loading, ends with exit 130 and one word, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    """Entry point: one-line errors for known failures, exit 130 on Ctrl-C."""
    try:
        from livecap.cli.commands import run

        run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def __getattr__(name: str) -> Any:
    if name == "app":
        from livecap.cli.commands import app

        return app
    raise AttributeError(f"module 'livecap.cli' has no attribute {name!r}")
