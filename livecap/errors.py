"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

from pathlib import Path


class LivecapError(Exception):
    """An error whose message is shown to the user as one line, with a non-zero exit."""


class WriteError(LivecapError):
    """A file that could not be written (a full disk, a folder in its place): `path` and `reason`
    let the caller say which folder failed and keep the content elsewhere."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path = path
        self.reason = reason
