"""`livecap mic` through a real audio device: speech played into a PulseAudio null sink, captured
from its monitor by PortAudio (ALSA `pulse` device), transcribed by the real model."""

from __future__ import annotations

import importlib.abc
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import Clip, run_cli
from livecap.bench.wer import wer
from livecap.errors import LivecapError
from pulse import PulseServer, pulse_server

pytestmark = pytest.mark.slow


def _server(folder: Path) -> Iterator[PulseServer]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(pulse_server(folder))
        except RuntimeError as error:
            pytest.skip(f"PulseAudio cannot start here: {error}")
        yield server


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    yield from _server(tmp_path_factory.mktemp("pulse"))


@pytest.fixture
def own_pulse(tmp_path: Path) -> Iterator[PulseServer]:
    """A server of the test's own, for tests that kill it."""
    yield from _server(tmp_path / "pulse")


def _clip(en_clips: list[Clip], name: str) -> Clip:
    return next(
        (c for c in en_clips if name in c.path.name), max(en_clips, key=lambda c: c.duration)
    )


def _start_mic(server: PulseServer, *args: str) -> subprocess.Popen:
    """Start `livecap mic` and return once it listens (the model is loaded)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "livecap", "mic", "--input-device", "pulse", *args],
        env={**server.env, "HF_HUB_OFFLINE": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "listening on" in line:
            return process
    process.wait(timeout=30)
    pytest.fail(f"livecap mic did not start (exit {process.returncode})")


def _finish(process: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    return process.communicate(timeout=timeout)


def test_mic_captions_speech_from_the_device(
    pulse: PulseServer, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = _clip(en_clips, "2412-153948-0000")
    mic = _start_mic(pulse, "--plain", "--duration", f"{clip.duration + 5:.1f}", "--gpu", "auto",
                     "--output-dir", str(tmp_path))
    player = pulse.play(clip.path)
    assert player.wait(timeout=60) == 0, player.stderr.read() if player.stderr else ""
    out, err = _finish(mic)
    assert mic.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    heard = " ".join(line.split("] ", 1)[1] for line in lines)
    assert wer(clip.reference, heard) < 0.35, heard
    journals = list(tmp_path.glob("mic-*.journal.jsonl"))
    assert len(journals) == 1
    journaled = [json.loads(line) for line in journals[0].read_text().splitlines()]
    assert [r["text"] for r in journaled] == [line.split("] ", 1)[1] for line in lines]
    stem = journals[0].name.removesuffix(".journal.jsonl")
    assert (tmp_path / f"{stem}.txt").read_text().split() == heard.split()
    document = json.loads((tmp_path / f"{stem}.json").read_text())
    assert document["duration"] >= clip.duration  # audio seconds captured


def test_mic_device_at_its_own_rate_is_resampled(pulse: PulseServer, en_clips: list[Clip]) -> None:
    """A device opened at 44.1 kHz: the soxr converter brings it to 16 kHz for the VAD and model."""
    from livecap.config import Config
    from livecap.engine import Engine
    from livecap.pipeline.runner import run_stream
    from livecap.sources.mic import MicSource

    clip = _clip(en_clips, "61-70968-0000")
    # read by the ALSA pulse plugin in this process
    os.environ["PULSE_SERVER"] = pulse.env["PULSE_SERVER"]
    try:
        if "sounddevice" in sys.modules:
            # PortAudio lists devices once: list them again with the server up
            sys.modules["sounddevice"]._terminate()
            sys.modules["sounddevice"]._initialize()
        source = MicSource("pulse", rate=44100)
        assert source.rate == 44100 and source.converter() is not None
        with Engine(Config()) as engine:
            stream = engine.stream(source, live=True, converter=source.converter())
            pulse.play(clip.path)
            result = run_stream(stream, duration=clip.duration + 4)
    finally:
        del os.environ["PULSE_SERVER"]
    assert result.end_reason is None and not result.errors
    assert wer(clip.reference, " ".join(c.text for c in result.captions)) < 0.35
    assert result.stats is not None and result.stats.dropped_seconds == 0


def test_mic_device_lost_keeps_what_was_heard(
    own_pulse: PulseServer, en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = _clip(en_clips, "61-70968-0000")
    mic = _start_mic(own_pulse, "--plain", "--output-dir", str(tmp_path))
    own_pulse.play(clip.path).wait(timeout=60)
    assert mic.stdout is not None
    first = mic.stdout.readline()  # the final caption of the clip
    own_pulse.kill()  # the device disappears mid-stream
    out, err = _finish(mic, timeout=60)
    assert mic.returncode == 1
    assert "audio device stopped" in err
    assert wer(clip.reference, first.split("] ", 1)[1] + out) < 0.35
    written = list(tmp_path.glob("mic-*.txt"))
    assert len(written) == 1 and wer(clip.reference, written[0].read_text()) < 0.35


def test_mic_ctrl_c_finishes_what_was_heard(
    pulse: PulseServer, en_clips: list[Clip], tmp_path: Path
) -> None:
    """Ctrl-C right after the speech: its final is still
    transcribed, journaled and written; exit 130."""
    clip = _clip(en_clips, "61-70968-0000")
    mic = _start_mic(pulse, "--plain", "--output-dir", str(tmp_path))
    pulse.play(clip.path).wait(timeout=60)
    mic.send_signal(signal.SIGINT)
    out, err = _finish(mic, timeout=60)
    assert mic.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert wer(clip.reference, out.split("] ", 1)[-1]) < 0.35
    written = list(tmp_path.glob("mic-*.txt"))
    assert len(written) == 1 and wer(clip.reference, written[0].read_text()) < 0.35


def test_mic_missing_device_is_a_one_line_error(pulse: PulseServer) -> None:
    result = run_cli("mic", "--input-device", "nosuchdevice", env=pulse.env, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == ["error: no input device matches 'nosuchdevice'; `livecap devices` lists them"]
    assert "Traceback" not in result.stderr


def test_devices_lists_the_input_devices(pulse: PulseServer) -> None:
    result = run_cli("devices", env={**pulse.env, "COLUMNS": "200"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pulse" in result.stdout and "default rate" in result.stdout


def test_mic_gpu_without_cuda_is_a_one_line_error(pulse: PulseServer) -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("a CUDA device is present")
    result = run_cli(
        "mic", "--input-device", "pulse", "--gpu", "--duration", "5", env=pulse.env, timeout=60
    )
    assert result.returncode == 2
    assert "error: --gpu: CTranslate2 sees no CUDA device" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_portaudio_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """sounddevice raises OSError at import when the PortAudio library is absent."""
    from livecap.sources.mic import list_input_devices

    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name == "sounddevice":
                raise OSError("PortAudio library not found")

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(
        LivecapError, match=r"apt-get install libportaudio2.*pip install 'livecap\[mic\]'"
    ):
        list_input_devices()
