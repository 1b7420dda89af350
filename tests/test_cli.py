"""Command-line conventions (issue 13 items 7, 8) and bench validation (issue 14 item 8): one name
per setting, help that shows defaults and choices, and failures before any work, not after it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli
from livecap.cli.options import flags
from livecap.errors import LivecapError

pytestmark = pytest.mark.slow  # each runs the command line in a fresh process


def test_short_help_version_and_completion() -> None:
    for args in (["-h"], ["file", "-h"], ["mic", "-h"], ["bench", "-h"]):
        done = run_cli(*args)
        assert done.returncode == 0 and "Usage: livecap" in done.stdout, (args, done.stderr)
    top = run_cli("--help").stdout
    assert "--install-completion" in top and "--version" in top
    version = run_cli("--version")
    assert version.returncode == 0 and re.fullmatch(r"livecap \d+\.\d+\.\d+\n", version.stdout)


def test_help_shows_defaults_and_choices_not_types() -> None:
    text = " ".join(run_cli("file", "-h").stdout.split())  # unwrapped
    for shown in (
        "--device [cpu|cuda|auto]",
        "[default: cpu]",
        "--task [transcribe|translate]",
        "--model NAME",
        "[default: tiny.en]",
        "-o, --output-dir DIR",
        "-f, --output-format LIST",
        "[default: txt,srt,vtt,json]",
        "--workers N",
        "[default: 2]",
    ):
        assert shown in text, shown
    assert "<str>" not in text and "<int>" not in text and "<bool>" not in text


def test_device_is_the_compute_device_everywhere_and_gpu_its_alias() -> None:
    assert flags(device="auto") == {"device": "auto"}
    assert flags(gpu="on") == {"device": "cuda"} and flags(gpu="off", device="cpu") == {
        "device": "cpu"
    }
    with pytest.raises(LivecapError, match="disagree"):
        flags(gpu="auto", device="cpu")
    assert "--input-device DEVICE" in " ".join(run_cli("mic", "-h").stdout.split())
    for command in (("file", "x.wav"), ("serve",)):
        # serve takes it too, checked before anything loads
        bad = run_cli(*command, "--device", "tpu")
        assert bad.returncode != 0 and "device must be one of cpu, cuda, auto" in bad.stderr, (
            command
        )


def test_misspelt_variable_is_a_warning(tmp_path: Path) -> None:
    done = run_cli(
        "file", str(tmp_path / "missing.wav"), "-o", str(tmp_path), env={"LIVECAP_BEAMSIZE": "3"}
    )
    assert "warning: environment LIVECAP_BEAMSIZE is not a livecap setting" in done.stderr
    assert "did you mean LIVECAP_BEAM_SIZE?" in done.stderr and "no such file" in done.stderr


def _error_line(done) -> str:  # noqa: ANN001 - a CompletedProcess
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_bench_checks_every_configuration_and_output_before_measuring(tmp_path: Path) -> None:
    line = _error_line(
        run_cli("bench", "--model", "tiny.en,nosuch", "--no-live", "--no-baseline", timeout=60)
    )
    assert "nosuch" in line
    line = _error_line(
        run_cli("bench", "--json", str(tmp_path), "--no-live", "--no-baseline", timeout=60)
    )
    assert "is a directory" in line
    line = _error_line(run_cli("bench", "--json", str(tmp_path / "no" / "x.json"), timeout=60))
    assert "folder does not exist" in line


def test_bench_shows_what_was_measured_when_a_later_configuration_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a model")
    (broken / "config.json").write_text("{}")
    report = tmp_path / "bench.json"
    done = run_cli(
        "bench", "--model", f"tiny.en,{broken}", "--no-live", "--no-baseline", "--json", str(report)
    )
    line = _error_line(done)
    assert str(broken) in line and "measured before it" in line
    assert "tiny.en" in done.stdout  # the table of what was measured
    measured = json.loads(report.read_text())["configurations"]
    assert len(measured) == 1 and measured[0]["summary"]["rtf"]["median"] > 0


def test_bench_session_is_a_hidden_deprecated_alias_of_mix(tmp_path: Path) -> None:
    """`--session MIN` (the old name of `--mix`) still works, says it is deprecated, and is not in
    the help; here it meets a missing input, so nothing is measured."""
    missing = tmp_path / "nosuch.wav"
    done = run_cli("bench", str(missing), "--session", "1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "warning: --session is deprecated: use --mix", f"error: {missing}: no such file"
    ]
    shown = run_cli("bench", "-h", env={"COLUMNS": "200"}).stdout
    assert "--mix" in shown and "--session" not in shown


def test_bench_reading_needs_a_mix_and_long_inputs(tmp_path: Path) -> None:
    sample = Path(__file__).parent.parent / "livecap" / "data" / "sample.flac"  # 11 s, referenced
    alone = run_cli("bench", str(sample), "--reading")
    assert alone.returncode == 2
    assert _error_line(alone) == "error: --reading builds a mix: give --mix MINUTES too"
    short = run_cli("bench", str(sample), "--mix", "1", "--reading", "--no-live", "--no-baseline")
    assert short.returncode == 2
    assert "needs inputs of 40 s or more with references" in _error_line(short)
