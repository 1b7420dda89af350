"""The media library: files uploaded once (POST /v1/media) and replayed as live sources by sessions.

Files are stored under `<data dir>/media/` as `<id>.media` with a `<id>.json` description beside
them; the id is chosen by the server (random hex) and is the only thing a client names, so a
client's file name is shown but never becomes a path. Each file is checked at upload: it must open
as media and audio must decode from it (`probe_duration`), else it is refused with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import platformdirs

from livecap.errors import LivecapError
from livecap.server.requests import RequestError
from livecap.server.state import SharedState
from livecap.sources.file import probe_duration

ID = re.compile(r"[0-9a-f]{16}")
MAX_NAME_CHARS = 200
MAX_ADDING = 4  # uploads to the library arriving at once (each spools up to the size limit)


@dataclass(frozen=True)
class MediaItem:
    """One uploaded recording kept for shared sessions."""
    id: str
    name: str  # the client's file name, for people only
    duration: float | None
    format: str
    bytes: int
    created: float


def default_data_dir() -> Path:
    """Where the media library lives by default: the user's data folder
    (platformdirs: ~/.local/share/livecap/server on Linux), or a fresh temporary
    folder when that cannot be created."""
    folder = platformdirs.user_data_path("livecap") / "server"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return Path(tempfile.mkdtemp(prefix="livecap-server-"))
    return folder


def display_name(name: str | None) -> str:
    """The client's file name cut to its last component, without control characters, bounded."""
    base = re.split(r"[/\\]", name or "")[-1]
    clean = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return clean[:MAX_NAME_CHARS] or "upload"


def _container_format(path: Path) -> str:
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        return container.format.name


class MediaLibrary:
    """The stored files (event loop only; file work runs in threads). With replicas, the index is
    shared (`shared`) and the folder is on storage they all mount."""

    def __init__(
        self, folder: Path, max_files: int, max_bytes: int, shared: SharedState | None = None
    ) -> None:
        self.folder = folder
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.shared = shared or SharedState()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._in_use: dict[str, int] = {}  # media id -> sessions here replaying it
        self._adding = 0
        self.items = {i: MediaItem(**item) for i, item in self.on_disk().items()}

    def on_disk(self) -> dict[str, dict]:
        """The items stored in the folder (by this run, an earlier one, or another replica)."""
        found = {}
        for meta in self.folder.glob("*.json"):
            try:
                item = MediaItem(**json.loads(meta.read_text(encoding="utf-8")))
            except (ValueError, TypeError, OSError):
                continue
            if ID.fullmatch(item.id) and self.path(item.id).is_file():
                found[item.id] = asdict(item)
        return found

    async def refresh(self) -> None:
        """Take in the shared index (alone: the items are this server's own already)."""
        shared = await self.shared.media_items({i: asdict(item) for i, item in self.items.items()})
        self.items = {i: MediaItem(**item) for i, item in shared.items() if ID.fullmatch(i)}

    def path(self, media_id: str) -> Path:
        """Where a stored file lives; only ever called with a server-chosen id."""
        return self.folder / f"{media_id}.media"

    def claim(self, media_id: str) -> None:
        """A session starts replaying a file: it cannot be deleted until `release`."""
        self._in_use[media_id] = self._in_use.get(media_id, 0) + 1

    def release(self, media_id: str) -> None:
        """A session stopped replaying a file."""
        self._in_use[media_id] -= 1

    async def get(self, media_id: object) -> MediaItem:
        if isinstance(media_id, str) and media_id not in self.items:
            await self.refresh()
        item = self.items.get(media_id) if isinstance(media_id, str) else None
        if item is None:
            raise RequestError(
                "no such media: GET /v1/media lists them", 404, code="media_not_found"
            )
        return item

    async def listing(self) -> list[dict]:
        await self.refresh()
        return [asdict(item) for item in sorted(self.items.values(), key=lambda i: i.created)]

    @contextmanager
    def reserve(self) -> Iterator[None]:
        """A place for one file while it arrives: refused at once when the library is full or too
        many files are arriving, before any of it is read."""
        if len(self.items) + self._adding >= self.max_files:
            raise RequestError(
                f"the media library is full ({self.max_files} files): delete some first", 507
            )
        if self._adding >= MAX_ADDING:
            raise RequestError(
                f"busy: {MAX_ADDING} uploads are arriving; try again", 503, "server_error"
            )
        self._adding += 1
        try:
            yield
        finally:
            self._adding -= 1

    async def add(self, name: str | None, file: BinaryIO) -> MediaItem:
        """Store a file (`name`: the client's, shown only) if it decodes; refuse it with the reason
        otherwise. Call it inside `reserve()`."""
        item = await asyncio.to_thread(self._store, name, file, secrets.token_hex(8))
        self.items[item.id] = item
        await self.shared.media_put(asdict(item))
        return item

    def _store(self, name: str | None, file: BinaryIO, media_id: str) -> MediaItem:
        path = self.path(media_id)
        try:
            with path.open("wb") as out:
                file.seek(0)
                shutil.copyfileobj(file, out, length=1 << 20)
            duration = probe_duration(path)
            fmt = _container_format(path)
            item = MediaItem(
                media_id,
                display_name(name),
                None if duration is None else round(duration, 3),
                fmt,
                path.stat().st_size,
                time.time(),
            )
            (self.folder / f"{media_id}.json").write_text(
                json.dumps(asdict(item)), encoding="utf-8"
            )
        except LivecapError as error:
            path.unlink(missing_ok=True)
            raise RequestError(
                str(error).replace(str(path), "the uploaded file"), code="bad_media"
            ) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return item

    async def delete(self, media_id: str, in_use: bool) -> None:
        """Remove a file unless a session replays it (`in_use`: on another replica)."""
        item = await self.get(media_id)
        if in_use or self._in_use.get(item.id):
            raise RequestError(
                "the media is being replayed by a session: stop it first", 409, code="media_in_use"
            )
        self.items.pop(item.id, None)
        await self.shared.media_remove(item.id)
        (self.folder / f"{item.id}.json").unlink(missing_ok=True)
        self.path(item.id).unlink(missing_ok=True)
