"""Offline translation with Argos Translate packages (optional extra ``livecap[argos]``).

argostranslate is imported lazily, so the core package never needs it. Where its
data lives follows argostranslate's own settings, read once when it is first
imported: ``ARGOS_PACKAGES_DIR`` (installed packages), ``XDG_DATA_HOME`` /
``XDG_CONFIG_HOME`` / ``XDG_CACHE_HOME`` (its other dirs), ``ARGOS_PACKAGE_INDEX``
(default index), and ``ARGOS_DEVICE_TYPE``, ``ARGOS_INTER_THREADS``,
``ARGOS_INTRA_THREADS``, ``ARGOS_COMPUTE_TYPE``, ``ARGOS_BEAM_SIZE`` for decoding.

Each utterance is translated as one segment with the package's tokenizer and
CTranslate2 model. argostranslate's own ``translate`` API is not used: it splits
text into sentences with stanza or MiniSBD, which fetch files from the network
on first use (stanza re-checks its resources.json on every pipeline load) and
pull in torch, while an ASR utterance needs no splitting.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import urllib.request
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

from livecap.errors import LivecapError
from livecap.translators.base import TranslationRequest

PIVOT_LANGUAGE = "en"
_INSTALL_HINT = "install one with: livecap models install-translation FILE.argosmodel"


def _argos() -> ModuleType:
    """Return ``argostranslate.package``, or say how to install the extra."""
    try:
        from argostranslate import package
    except ImportError as exc:
        raise LivecapError(
            "argos translation needs the optional extra: pip install 'livecap[argos]'"
        ) from exc
    return package


def _installed_packages() -> dict[tuple[str, str], Any]:
    """Installed translate packages by (from_code, to_code)."""
    return {
        (pkg.from_code, pkg.to_code): pkg
        for pkg in _argos().get_installed_packages()
        if pkg.type == "translate" and pkg.from_code and pkg.to_code
    }


def list_installed_pairs() -> list[tuple[str, str]]:
    """Directly installed (from_code, to_code) pairs, sorted."""
    return sorted(_installed_packages())


def _find_route(packages: dict[tuple[str, str], Any], source: str, target: str) -> list[Any]:
    """Packages that translate source to target: direct, else through one pivot (English first)."""
    if (source, target) in packages:
        return [packages[source, target]]
    pivots = sorted(
        (to for (frm, to) in packages if frm == source), key=lambda code: code != PIVOT_LANGUAGE
    )
    for pivot in pivots:
        if (pivot, target) in packages:
            return [packages[source, pivot], packages[pivot, target]]
    installed = ", ".join(f"{a}→{b}" for a, b in sorted(packages)) or "none"
    raise LivecapError(
        f"no Argos translation package for {source} → {target} (installed: {installed}); "
        f"{_INSTALL_HINT}"
    )


class _Step:
    """One installed package with its loaded CTranslate2 model."""

    def __init__(self, package: Any) -> None:
        import ctranslate2
        from argostranslate import settings

        if getattr(package, "tokenizer", None) is None:
            raise LivecapError(
                f"Argos package {package.package_path} has no sentencepiece.model or bpe.model"
            )
        self.package = package
        self.beam_size = settings.beam_size
        self.model = ctranslate2.Translator(
            str(package.package_path / "model"),
            device=settings.device,
            inter_threads=settings.inter_threads,
            intra_threads=settings.intra_threads,
            compute_type=settings.compute_type,
        )

    def translate(self, text: str) -> str:
        prefix = self.package.target_prefix
        result = self.model.translate_batch(
            [self.package.tokenizer.encode(text)],
            target_prefix=[[prefix]] if prefix else None,
            replace_unknowns=True,
            beam_size=self.beam_size,
            length_penalty=0.2,
        )[0]
        output = self.package.tokenizer.decode(result.hypotheses[0])
        return output.removeprefix(prefix).strip() if prefix else output.strip()


class ArgosTranslator:
    """Translator backed by installed Argos Translate packages (models cached per package)."""

    name = "argos"

    def __init__(self) -> None:
        _argos()  # fail at startup, not on the first utterance, when the extra is missing
        self._routes: dict[tuple[str, str], list[_Step]] = {}
        self._steps: dict[Path, _Step] = {}
        self._lock = threading.Lock()

    def translate(self, request: TranslationRequest) -> str:
        """Translate one utterance; raise LivecapError when no package covers the pair."""
        text, source, target = (
            request.text.strip(),
            request.source_language,
            request.target_language,
        )
        if not text or source == target:
            return text
        if source is None:
            raise LivecapError(
                "argos translation needs the source language; set it or use a multilingual model"
            )
        with self._lock:
            for step in self._route(source, target):
                text = step.translate(text)
        return text

    def _route(self, source: str, target: str) -> list[_Step]:
        if (source, target) not in self._routes:
            packages = _find_route(_installed_packages(), source, target)
            for pkg in packages:
                if pkg.package_path not in self._steps:
                    self._steps[pkg.package_path] = _Step(pkg)
            self._routes[source, target] = [self._steps[pkg.package_path] for pkg in packages]
        return self._routes[source, target]


def install_package_file(path: Path) -> str:
    """Install a ``.argosmodel`` file; return the pair it provides, e.g. ``"de → en"``."""
    package = _argos()
    if not path.is_file():
        raise LivecapError(f"no such Argos package file: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [
                n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/metadata.json")
            ]
            metadata = json.loads(archive.read(names[0])) if len(names) == 1 else {}
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError) as exc:
        raise LivecapError(f"{path} is not a valid .argosmodel package: {exc}") from exc
    if (
        not isinstance(metadata, dict)
        or not metadata.get("from_code")
        or not metadata.get("to_code")
    ):
        raise LivecapError(
            f"{path} is not a valid .argosmodel package: no <name>/metadata.json with "
            "from_code/to_code"
        )
    package.install_from_path(path)
    return f"{metadata['from_code']} → {metadata['to_code']}"


def install_from_index(from_code: str, to_code: str, index_url: str | None = None) -> str:
    """Download and install the newest from_code → to_code package listed in an Argos index JSON.

    ``index_url`` is the index file's URL (http, https or file); by default
    argostranslate's configured one (``ARGOS_PACKAGE_INDEX`` + ``index.json``).
    """
    package = _argos()
    from packaging.version import Version  # a dependency of argostranslate

    url = index_url or package.settings.remote_package_index
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            index = json.load(response)
    except (OSError, ValueError) as exc:
        raise LivecapError(f"cannot read the Argos package index {url}: {exc}") from exc
    if not isinstance(index, list):
        raise LivecapError(f"the Argos package index {url} is not a JSON list of packages")
    candidates = [
        entry
        for entry in index
        if isinstance(entry, dict)
        and entry.get("type", "translate") == "translate"
        and (entry.get("from_code"), entry.get("to_code")) == (from_code, to_code)
        and entry.get("links")
    ]
    if not candidates:
        raise LivecapError(f"the Argos package index {url} has no {from_code} → {to_code} package")
    try:
        best = max(candidates, key=lambda entry: Version(str(entry.get("package_version") or "0")))
    except ValueError as exc:
        raise LivecapError(
            f"the Argos package index {url} has an invalid package_version: {exc}"
        ) from exc
    errors = []
    with tempfile.TemporaryDirectory(prefix="livecap-argos-") as tmp:
        path = Path(tmp) / f"{from_code}_{to_code}.argosmodel"
        for link in best["links"]:
            try:
                with urllib.request.urlopen(link, timeout=60) as response, path.open("wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as exc:
                errors.append(f"{link}: {exc}")
                continue
            return install_package_file(path)
    raise LivecapError(
        f"download of the {from_code} → {to_code} Argos package failed: {'; '.join(errors)}"
    )
