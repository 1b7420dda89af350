"""Translation: Whisper speech translation on real non-English speech, subtitle text, and the Argos
backend through the CLI (a real tiny package built at test time); the ordered translation stage,
with fakes, is in test_stream."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import srt

from conftest import Clip, run_cli

pytestmark = pytest.mark.slow

# Content words an English translation of each shared clip should contain (at least two each).
# de: "Der hinter diesem Portal liegenden Raum wurde als Leichenhalle genutzt."
# es: "Las arenas son blanquecinas de grano medio y tiene muy poca asistencia."
# fr: "Sous le consulat il devient conservateur des eaux et forêts et conseiller général."
EXPECTED = {
    "de": {"portal", "room", "hall", "morgue", "mortuary", "behind", "used"},
    "es": {"sand", "sands", "white", "whitish", "grain", "medium", "little"},
    "fr": {
        "under",
        "consulate",
        "console",
        "forest",
        "forests",
        "water",
        "waters",
        "general",
        "council",
    },
}


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-zà-ÿ]+", text.lower()))


def test_whisper_translates_speech_to_english(non_en_clips: list[Clip], tmp_path: Path) -> None:
    """One `file` run over the German, Spanish and French
    clips: json holds both texts, srt shows both."""
    chosen = {c.language: c for c in non_en_clips if c.language in EXPECTED}
    assert set(chosen) == set(EXPECTED)
    result = run_cli(
        "file", *(str(c.path) for c in chosen.values()), "--model", "base", "--translate-to", "en",
        "--output-dir", str(tmp_path), "--output-format", "json,srt", "--plain",
    )
    assert result.returncode == 0, result.stderr
    for language, clip in chosen.items():
        document = json.loads((tmp_path / f"{clip.path.stem}.json").read_text(encoding="utf-8"))
        segments = document["segments"]
        assert segments and document["language"] == language
        original = " ".join(s["text"] for s in segments)
        translation = " ".join(s["translation"] for s in segments)
        assert not any(s["translation_failed"] for s in segments)
        assert "the" in words(translation), translation  # English, not the original language
        assert len(words(translation) & EXPECTED[language]) >= 2, translation
        # the original stays the transcript
        assert words(original) & words(clip.reference), original
        for name, text in (
            (f"{clip.path.stem}.srt", original),
            (f"{clip.path.stem}.en.srt", translation),
        ):
            cues = srt.parse((tmp_path / name).read_text(encoding="utf-8"))
            assert " ".join(cue.content for cue in cues).split() == text.split()
        for segment in segments:
            assert f"{segment['text']} || {segment['translation']}" in result.stdout


NO_ARGOS = (
    "import sys; sys.modules['argostranslate'] = None; from livecap.cli import main; "
    "sys.argv[0] = 'livecap'; main()"
)


def test_argos_without_the_extra_is_a_one_line_error(en_clips: list[Clip], tmp_path: Path) -> None:
    """As if argostranslate were not installed (a None entry
    in sys.modules makes its import fail)."""
    result = subprocess.run(
        [
            sys.executable, "-c", NO_ARGOS, "file", str(en_clips[0].path), "--translate-to", "de",
            "--output-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: argos translation needs the optional extra: pip install 'livecap[argos]'"
    ]
    assert result.stdout == "" and not list(tmp_path.iterdir())  # failed at start, before any audio


def argos_env(root: Path) -> dict[str, str]:
    """Environment that keeps argostranslate's (and livecap's user config) files under `root`."""
    env = {
        key: str(root / key.lower())
        for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    }
    return {
        **env,
        "ARGOS_PACKAGES_DIR": str(root / "packages"),
        "ARGOS_PACKAGE_INDEX": "http://127.0.0.1:9/",
    }


def test_argos_install_list_and_translate_through_the_cli(
    en_clips: list[Clip], tmp_path: Path, loopback_server: tuple[str, Path]
) -> None:
    """Install from a file and from a loopback index, list the pairs, then caption with argos."""
    pytest.importorskip("argostranslate")
    from argos_fixture import GREETINGS, build_argos_package

    env = argos_env(tmp_path / "argos")
    en_de = build_argos_package(tmp_path, "en", "de")
    installed = run_cli("models", "install-translation", str(en_de), env=env)
    assert installed.returncode == 0, installed.stderr
    assert "installed translation en → de" in installed.stdout

    url, served = loopback_server
    build_argos_package(served, "es", "en")
    entry = {
        "from_code": "es",
        "to_code": "en",
        "package_version": "1.0",
        "links": [f"{url}/es_en.argosmodel"],
    }
    (served / "index.json").write_text(json.dumps([entry]))
    index_env = {**env, "LIVECAP_ARGOS_INDEX_URL": f"{url}/index.json", "no_proxy": "127.0.0.1"}
    from_index = run_cli(
        "models", "install-translation", "--from", "es", "--to", "en", env=index_env
    )
    assert from_index.returncode == 0, from_index.stderr
    assert "installed translation es → en" in from_index.stdout
    missing = run_cli("models", "install-translation", "--from", "it", "--to", "en", env=index_env)
    assert missing.returncode == 2 and "has no it → en package" in missing.stderr

    listed = run_cli("models", env=env)
    assert listed.returncode == 0 and "argos en → de, es → en" in listed.stdout

    out = tmp_path / "out"
    captioned = run_cli(
        "file", str(en_clips[0].path), "--translate-to", "de", "--output-dir", str(out),
        "--output-format", "json,vtt", "--subtitle-text", "translation", env=env,
    )
    assert captioned.returncode == 0, captioned.stderr
    segments = json.loads((out / f"{en_clips[0].path.stem}.json").read_text(encoding="utf-8"))[
        "segments"
    ]
    assert segments and all(
        s["language"] == "en" and s["translation"] == GREETINGS["de"] for s in segments
    )
    # --subtitle-text translation: only <stem>.de.vtt
    assert not (out / f"{en_clips[0].path.stem}.vtt").exists()
    vtt = (out / f"{en_clips[0].path.stem}.de.vtt").read_text(encoding="utf-8")
    assert vtt.count(f"\n{GREETINGS['de']}\n") == len(segments) and segments[0]["text"] not in vtt

    no_pair = run_cli(
        "file", str(en_clips[0].path), "--translate-to", "fr", "--output-dir", str(out), env=env
    )
    assert (
        no_pair.returncode == 2
        and "no Argos translation package translates into fr" in no_pair.stderr
    )
