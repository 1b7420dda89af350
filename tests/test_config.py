"""Configuration: layer precedence, shipped profiles,
one-line errors, and a profile changing a real run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import manifest, run_cli, speak
from livecap.config import FIELDS, Config, list_profiles, profile_description, resolve
from livecap.errors import LivecapError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROFILE = """# a test profile
[asr]
beam_size = 2
workers = 3
[vad]
min_silence_ms = 700
max_utterance_s = 10.0
"""
USER = "workers = 4\n[vad]\nmin_silence_ms = 800\nmax_utterance_s = 11.0\n"
ENV = {"LIVECAP_MIN_SILENCE_MS": "900", "LIVECAP_MAX_UTTERANCE_S": "12"}
# Each key is set by every layer up to the one that must win it.
WINNERS = {
    "model": ("tiny.en", "default"),
    "beam_size": (2, "profile"),
    "workers": (4, "user config"),
    "min_silence_ms": (900, "environment LIVECAP_MIN_SILENCE_MS"),
    "max_utterance_s": (13.0, "command line"),
}


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path]:
    """A profile and a user config file (each layer's keys as in WINNERS)."""
    profile, user = tmp_path / "mine.toml", tmp_path / "user.toml"
    profile.write_text(PROFILE)
    user.write_text(USER)
    return profile, user


@pytest.fixture
def no_user_config(tmp_path: Path) -> dict[str, str]:
    """An environment whose user config file is empty, so a
    real one on this machine cannot interfere."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    return {"LIVECAP_CONFIG": str(empty)}


def _expected_source(label: str, profile: Path, user: Path) -> str:
    return {"profile": f"profile {profile}", "user config": f"user config {user}"}.get(label, label)


def test_precedence_through_resolve(layers: tuple[Path, Path]) -> None:
    profile, user = layers
    resolved = resolve(
        str(profile), {"max_utterance_s": 13.0}, {**ENV, "LIVECAP_CONFIG": str(user)}
    )
    values = resolved.config.flat()
    for key, (value, label) in WINNERS.items():
        assert values[key] == value, key
        assert resolved.sources[key] == _expected_source(label, profile, user), key
    assert resolved.config.asr.beam_size == 2 and resolved.config.vad.min_silence_ms == 900


def test_precedence_through_profiles_show(layers: tuple[Path, Path]) -> None:
    profile, user = layers
    done = run_cli("profiles", "show", str(profile), "--set", "max_utterance_s=13",
                   env={**ENV, "LIVECAP_CONFIG": str(user)})
    assert done.returncode == 0, done.stderr
    values = {
        key: value for table in tomllib.loads(done.stdout).values() for key, value in table.items()
    }
    assert set(values) == set(FIELDS)  # every key, and the output reads back as TOML
    sources = {
        line.split(" = ")[0]: line.rsplit("  # ", 1)[1]
        for line in done.stdout.splitlines()
        if " = " in line and not line.startswith("#")
    }
    for key, (value, label) in WINNERS.items():
        assert values[key] == value, key
        assert sources[key] == _expected_source(label, profile, user), key
    assert f"user config: {user}" in done.stdout
    shown = profile.with_name("shown.toml")
    shown.write_text(done.stdout)
    expected = resolve(
        str(profile), {"max_utterance_s": 13.0}, {**ENV, "LIVECAP_CONFIG": str(user)}
    ).config
    empty = profile.with_name("empty.toml")
    empty.write_text("")
    # usable as a profile
    assert resolve(str(shown), None, {"LIVECAP_CONFIG": str(empty)}).config == expected


def test_profile_chosen_by_environment(no_user_config: dict[str, str]) -> None:
    resolved = resolve(None, None, {**no_user_config, "LIVECAP_PROFILE": "accurate"})
    assert resolved.config.asr.model == "base" and resolved.sources["model"] == "profile accurate"
    assert (
        resolve(
            "cpu-fast", None, {**no_user_config, "LIVECAP_PROFILE": "accurate"}
        ).config.asr.model
        == "tiny.en"
    )


# What each shipped profile is for, as values it must hold.
SHIPPED = {
    "default": {},
    "cpu-fast": {"model": "tiny.en", "compute_type": "int8", "beam_size": 1},
    "accurate": {"model": "base", "beam_size": 5},
    "gpu": {"device": "cuda", "compute_type": "float16"},
    "low-memory": {"model": "tiny.en", "compute_type": "int8", "workers": 1},
    "meeting": {},
    "translate-en": {"model": "base", "translate_to": "en", "translator": "whisper"},
}


@pytest.mark.parametrize("name", sorted(set(SHIPPED) | set(list_profiles())))
def test_shipped_profile_loads(name: str, no_user_config: dict[str, str]) -> None:
    path = list_profiles()[name]
    assert path.read_text().startswith("# ") and profile_description(path)
    resolved = resolve(name, None, no_user_config)
    values, defaults = resolved.config.flat(), Config().flat()
    changed = {key for key, source in resolved.sources.items() if source == f"profile {name}"}
    assert (name == "default") == (not changed)
    for key, value in SHIPPED.get(name, {}).items():
        assert values[key] == value, key
    if name == "gpu":
        assert values["workers"] > defaults["workers"]
    if name == "low-memory":
        assert values["max_pending_finals"] < defaults["max_pending_finals"]
        assert values["capture_queue_s"] < defaults["capture_queue_s"]
    if name == "meeting":
        assert values["min_silence_ms"] > defaults["min_silence_ms"]
        assert values["max_utterance_s"] > defaults["max_utterance_s"]


# Commands that read no configuration (they list things), so take no --profile.
NO_CONFIGURATION = {"devices", "models", "models pull", "profiles", "watch"}


def test_every_command_takes_profile() -> None:
    from typer.main import get_command

    from livecap.cli import app

    def commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, f"{path} {name}".strip())

    lacking = {
        path
        for path, command in commands(get_command(app), "")
        if path
        and path not in NO_CONFIGURATION
        and "profile" not in {p.name for p in command.params}
    }
    assert not lacking, f"commands without --profile: {lacking}"


def test_profiles_lists_shipped_profiles_with_descriptions() -> None:
    done = run_cli("profiles")
    assert done.returncode == 0, done.stderr
    for name, path in list_profiles().items():
        line = rf"^{re.escape(name)} +{re.escape(profile_description(path))}$"
        assert re.search(line, done.stdout, re.MULTILINE), name


BAD_PROFILES = {
    "unknown key": ("[asr]\nbeam_sise = 2\n", ["beam_sise", "did you mean beam_size", "allowed:"]),
    "key in the wrong table": ("[vad]\nbeam_size = 2\n", ["beam_size belongs in [asr]"]),
    "unknown table": ("[audio]\nx = 1\n", ["unknown table [audio]", "[asr], [vad]"]),
    "wrong type": (
        '[asr]\nbeam_size = "two"\n',
        ["beam_size must be a whole number from 1 to 16", "'two'"],
    ),
    "out of range": (
        "[vad]\nmin_silence_ms = 5\n",
        ["min_silence_ms must be a whole number from 32 to 10000"],
    ),
    "bad choice": ('[asr]\ndevice = "tpu"\n', ["device must be one of cpu, cuda, auto", "'tpu'"]),
    "broken toml": ("[asr\nbeam_size = 2\n", ["not valid TOML", "line 1"]),
}


def _one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_error_names_file_key_and_rule(
    case: str, tmp_path: Path, no_user_config: dict[str, str]
) -> None:
    text, fragments = BAD_PROFILES[case]
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(LivecapError) as caught:
        resolve(str(bad), None, no_user_config)
    message = str(caught.value)
    assert message.startswith(f"{bad}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("case", ["unknown key", "wrong type", "out of range", "broken toml"])
def test_bad_profile_is_one_line_error(
    case: str, tmp_path: Path, no_user_config: dict[str, str]
) -> None:
    text, fragments = BAD_PROFILES[case]
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    done = run_cli("file", "never-read.wav", "--profile", str(bad), env=no_user_config)
    _one_line_error(done, str(bad), *fragments)


def test_missing_profile_is_one_line_error(tmp_path: Path) -> None:
    _one_line_error(
        run_cli("profiles", "show", str(tmp_path / "gone.toml")), "gone.toml", "no such file"
    )
    _one_line_error(
        run_cli("file", "x.wav", "--profile", "nonesuch"), "unknown profile 'nonesuch'", "accurate"
    )


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (
            ["--beam-size", "0"],
            {},
            ["--beam-size: beam_size must be a whole number from 1 to 16 (got 0)"],
        ),
        (
            ["--output-format", "txt,doc"],
            {},
            ["--output-format: output_format must be a list of txt, srt, vtt, json"],
        ),
        (
            [],
            {"LIVECAP_VAD_THRESHOLD": "high"},
            ["environment LIVECAP_VAD_THRESHOLD: vad_threshold must be a number"],
        ),
    ],
)
def test_bad_flag_or_environment_is_one_line_error(
    args: list[str], env: dict[str, str], fragments: list[str], no_user_config: dict[str, str]
) -> None:
    _one_line_error(
        run_cli("file", "never-read.wav", *args, env={**no_user_config, **env}), *fragments
    )


def test_bad_user_config_names_the_file(tmp_path: Path) -> None:
    user = tmp_path / "config.toml"
    user.write_text('[output]\noutput_format = "txt"\n')  # a string, not a list
    _one_line_error(
        run_cli("profiles", "show", env={"LIVECAP_CONFIG": str(user)}), str(user), "output_format"
    )
    _one_line_error(
        run_cli("profiles", "show", env={"LIVECAP_CONFIG": str(tmp_path / "no.toml")}),
        "LIVECAP_CONFIG",
    )


@pytest.mark.parametrize(
    "line",
    [
        "beam_size = 2.0",  # a float for a whole number
        'beam_size = "2"',  # in TOML a string is not a number
        "interim = 1",
        "vad_threshold = true",
        "vad_threshold = nan",
        "output_format = []",
        'output_format = "txt"',
        'model = ""',
        "language = 3",
    ],
)
def test_rejected_toml_values(line: str, tmp_path: Path, no_user_config: dict[str, str]) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(line + "\n")
    key = line.split(" = ")[0]
    with pytest.raises(
        LivecapError, match=rf"^{re.escape(str(profile))}: {key} must be .* \(got .*\)$"
    ):
        resolve(str(profile), None, no_user_config)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("interim", "maybe"),
        ("vad_threshold", "nan"),
        ("beam_size", "1.5"),
        ("output_format", " , "),
        ("task", ""),
    ],
)
def test_rejected_environment_values(key: str, value: str, no_user_config: dict[str, str]) -> None:
    variable = f"LIVECAP_{key.upper()}"
    with pytest.raises(
        LivecapError, match=rf"^environment {variable}: {key} must be .* \(got .*\)$"
    ):
        resolve(None, None, {**no_user_config, variable: value})


def test_text_values_are_parsed(tmp_path: Path, no_user_config: dict[str, str]) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('[asr]\nlanguage = "de"\n[translate]\ntranslate_to = "fr"\n')
    env = {
        **no_user_config,
        "LIVECAP_OUTPUT_FORMAT": "SRT, txt,srt",
        "LIVECAP_INTERIM": "off",
        "LIVECAP_LANGUAGE": "",
    }
    config = resolve(str(profile), {"beam_size": "3", "translate_to": "none"}, env).config
    assert config.output.output_format == ("srt", "txt")
    assert config.live.interim is False
    assert config.asr.language is None and config.translate.translate_to is None
    assert config.asr.beam_size == 3


def test_vad_thresholds_must_be_ordered(no_user_config: dict[str, str]) -> None:
    with pytest.raises(
        LivecapError, match=r"vad_neg_threshold 0.35 \(default\) must not exceed vad_threshold 0.2"
    ):
        resolve(None, {"vad_threshold": 0.2}, no_user_config)


def test_unknown_flag_key(no_user_config: dict[str, str]) -> None:
    with pytest.raises(
        LivecapError, match=r"^command line: unknown key 'beam' \(did you mean beam_size\?\)"
    ):
        resolve(None, {"beam": 2}, no_user_config)


@pytest.fixture(scope="module")
def german_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """German speech: a shared recording, or one spoken here."""
    shared = [c.path for c in manifest() if c.language == "de" and c.path.is_file()]
    if shared:
        return shared[0]
    text = "Der Raum hinter diesem Tor wurde als Leichenhalle genutzt."
    return speak(text, tmp_path_factory.mktemp("de") / "de.wav", voice="de", rate=140)


@pytest.mark.slow
def test_profile_changes_what_runs(
    german_clip: Path, tmp_path: Path, no_user_config: dict[str, str]
) -> None:
    """A profile choosing base, Whisper's translate task and
    json only: each is visible in the run's output."""
    profile = tmp_path / "run.toml"
    profile.write_text(
        '# test\n[asr]\nmodel = "base"\nbeam_size = 2\ntask = "translate"\n'
        '[output]\noutput_format = ["json"]\n'
    )
    out = tmp_path / "out"
    done = run_cli(
        "file", str(german_clip), "--profile", str(profile), "--output-dir", str(out), "--plain",
        env=no_user_config,
    )
    assert done.returncode == 0, done.stderr
    # output stage: json only
    assert [p.name for p in out.iterdir()] == [f"{german_clip.stem}.json"]
    document = json.loads((out / f"{german_clip.stem}.json").read_text())
    assert document["language"] == "en"  # the translate task writes English ...
    # ... of German only base detects
    assert {s["spoken_language"] for s in document["segments"]} == {"de"}
    # translate task: English text
    assert re.search(r"\bthe\b", document["text"], re.IGNORECASE), document["text"]


def test_server_section_is_layered_like_the_others(
    tmp_path: Path, no_user_config: dict[str, str]
) -> None:
    profile = tmp_path / "server.toml"
    profile.write_text('[server]\nport = 9000\nmax_viewers = 50\ndata_dir = "/srv/media"\n')
    env = {**no_user_config, "LIVECAP_MAX_STREAMS": "3", "LIVECAP_DRAIN_S": "2.5"}
    resolved = resolve(str(profile), {"port": "9100", "max_upload_mb": "1.5"}, env)
    server = resolved.config.server
    assert (server.port, server.max_viewers, server.data_dir, server.max_streams) == (
        9100,
        50,
        "/srv/media",
        3,
    )
    assert server.max_upload_bytes == 1536 * 1024 and server.max_frame_bytes == 256 * 1024
    assert (
        resolved.sources["port"] == "command line"
        and resolved.sources["max_viewers"] == f"profile {profile}"
    )
    assert (
        resolved.sources["drain_s"] == "environment LIVECAP_DRAIN_S"
        and resolved.sources["host"] == "default"
    )
    # a secret: --api-key or LIVECAP_API_KEY only, never a file or a listing
    assert "api_key" not in FIELDS
    for flags, words in (({"port": "70000"}, "port must be a whole number from 0 to 65535"),
                         ({"max_streams": "0"}, "max_streams must be a whole number from 1")):
        with pytest.raises(LivecapError, match=words):
            resolve(None, flags, no_user_config)
