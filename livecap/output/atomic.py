"""Safe writing: a file is either its old content or its complete new content, never
half written, and names chosen for a run's outputs never collide. Plain functions,
shared by the CLI and a server."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from livecap.errors import LivecapError, WriteError


def write_atomic(path: Path, content: str) -> None:
    """Write `content` to a temporary file in the same folder, then rename it over `path`: a crash,
    a full disk or a kill leaves the old file (or none), never a truncated one."""
    try:
        handle, temp = tempfile.mkstemp(
            prefix=f".{path.name[:50]}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise WriteError(path, error.strerror or str(error)) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException as error:
        # any failure, even an interrupt, leaves no temporary file behind
        Path(temp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise WriteError(path, error.strerror or str(error)) from None
        raise


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be made in it. The probe has a unique name,
    so runs writing into the same folder at the same time do not trip over each other's."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".livecap-write-test-"):
            pass
    except OSError as error:
        raise LivecapError(
            f"cannot write to output directory {folder}: {error.strerror or error}"
        ) from None


# file names are at most 255 bytes: room for `-2`, `.journal.jsonl`, `.de.verbose.json`
STEM_BYTES = 200


def _fit(name: str) -> str:
    """`name` cut to STEM_BYTES of UTF-8 (a whole character at a time)."""
    return name.encode("utf-8")[:STEM_BYTES].decode("utf-8", errors="ignore")


def unique_stems(
    names: Iterable[str], in_use: Callable[[str], bool] = lambda stem: False
) -> list[str]:
    """One output stem per input, never the same twice in a run, and none that `in_use` claims
    (files an earlier run wrote): `clip`, `clip-2`, `clip-3`... A name too long for the file
    system once a suffix is added is shortened."""
    taken: set[str] = set()
    stems = []
    for name in map(_fit, names):
        stem, n = name, 1
        while stem in taken or in_use(stem):
            n += 1
            stem = f"{name}-{n}"
        taken.add(stem)
        stems.append(stem)
    return stems
