"""The `livecap` command line: a thin layer over the library
(the commands are in `livecap.cli.commands`).

This module loads nothing heavy, so that a stop signal at any moment, even while the command line
is still loading, ends with one word and its exit code, never a traceback.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def main() -> None:
    """Entry point: one-line errors for known failures; a stop signal at any moment says
    "interrupted" and exits 128 + its number (130 for Ctrl-C, 143 for SIGTERM)."""
    from livecap.cli.signals import Interrupted, raise_on_stop_signals

    raise_on_stop_signals()
    try:
        from livecap.cli.commands import run

        run()
    except (Interrupted, KeyboardInterrupt) as stop:
        print("interrupted", file=sys.stderr)
        raise SystemExit(128 + getattr(stop, "signum", signal.SIGINT)) from None


def __getattr__(name: str) -> Any:
    if name == "app":
        from livecap.cli.commands import app

        return app
    raise AttributeError(f"module 'livecap.cli' has no attribute {name!r}")
