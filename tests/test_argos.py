"""Argos backend against real tiny .argosmodel packages built at test time: no mocks, no network."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("argostranslate")  # its __init__ is empty: no settings are read yet

from argos_fixture import GREETINGS, build_argos_package, isolate_argos  # noqa: E402
from livecap.errors import LivecapError  # noqa: E402
from livecap.translators.argos import (  # noqa: E402
    ArgosTranslator,
    install_from_index,
    install_package_file,
    list_installed_pairs,
)
from livecap.translators.base import TranslationRequest  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def argos_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """All argostranslate data for this module lives in a temp dir."""
    isolate_argos(tmp_path_factory.mktemp("argos-home"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Package files for de→en, en→fr and es→en."""
    out = tmp_path_factory.mktemp("argosmodels")
    return {
        (a, b): build_argos_package(out, a, b)
        for a, b in [("de", "en"), ("en", "fr"), ("es", "en")]
    }


def _request(text: str, source: str | None, target: str) -> TranslationRequest:
    return TranslationRequest(
        text=text, source_language=source, target_language=target, samples=None
    )


def test_install_list_and_translate(built: dict[tuple[str, str], Path]) -> None:
    assert install_package_file(built["de", "en"]) == "de → en"
    assert ("de", "en") in list_installed_pairs()
    translator = ArgosTranslator()
    assert translator.name == "argos"
    out = translator.translate(_request("Guten Morgen, wie geht es dir heute?", "de", "en"))
    assert out == GREETINGS["en"]
    assert translator.translate(_request("Der Zug hat Verspätung.", "de", "en")) == GREETINGS["en"]


def test_pivot_through_english(built: dict[tuple[str, str], Path]) -> None:
    install_package_file(built["de", "en"])
    install_package_file(built["en", "fr"])
    assert ("de", "fr") not in list_installed_pairs()
    assert ArgosTranslator().translate(_request("Vielen Dank.", "de", "fr")) == GREETINGS["fr"]


def test_missing_pair_and_trivial_requests(built: dict[tuple[str, str], Path]) -> None:
    install_package_file(built["de", "en"])
    translator = ArgosTranslator()
    with pytest.raises(LivecapError, match=r"ja → ko.*install-translation"):
        translator.translate(_request("こんにちは", "ja", "ko"))
    with pytest.raises(LivecapError, match="source language"):
        translator.translate(_request("Hallo", None, "en"))
    assert translator.translate(_request(" Hello there ", "en", "en")) == "Hello there"
    assert translator.translate(_request("   ", "de", "en")) == ""


def test_install_package_file_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(LivecapError, match="no such"):
        install_package_file(tmp_path / "missing.argosmodel")
    not_zip = tmp_path / "not_zip.argosmodel"
    not_zip.write_text("hello")
    with pytest.raises(LivecapError, match="not a valid"):
        install_package_file(not_zip)
    no_metadata = tmp_path / "no_metadata.argosmodel"
    with zipfile.ZipFile(no_metadata, "w") as archive:
        archive.writestr("translate-xx_yy/README.md", "no metadata.json")
    with pytest.raises(LivecapError, match="not a valid"):
        install_package_file(no_metadata)


def test_install_from_index(
    built: dict[tuple[str, str], Path], loopback_server: tuple[str, Path]
) -> None:
    base, served = loopback_server
    (served / "es_en.argosmodel").write_bytes(built["es", "en"].read_bytes())
    entry = {"from_code": "es", "to_code": "en", "from_name": "Spanish", "to_name": "English"}
    index = [
        {**entry, "package_version": "0.9", "links": [f"{base}/gone.argosmodel"]},
        {**entry, "package_version": "1.0", "links": [f"{base}/es_en.argosmodel"]},
    ]
    (served / "index.json").write_text(json.dumps(index))
    assert ("es", "en") not in list_installed_pairs()
    assert install_from_index("es", "en", f"{base}/index.json") == "es → en"
    assert ("es", "en") in list_installed_pairs()
    assert ArgosTranslator().translate(_request("Buenos días", "es", "en")) == GREETINGS["en"]
    with pytest.raises(LivecapError, match="has no it → en"):
        install_from_index("it", "en", f"{base}/index.json")
    with pytest.raises(LivecapError, match="cannot read"):
        install_from_index("es", "en", f"{base}/missing.json")
