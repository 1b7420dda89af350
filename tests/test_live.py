"""The live pipeline: `livecap file --realtime` on real speech (1x replay), silence and
noise, `--gpu` (the pipeline under overload, with a fake ASR backend, is in test_stream)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import Clip, run_cli
from live_audio import join_clips, joined_clips, write_wav
from livecap.bench.wer import wer
from livecap.messages import SAMPLE_RATE
from livecap.sources.file import decode_blocks

pytestmark = pytest.mark.slow

PAUSE_S = 1.5


@pytest.fixture(scope="session")
def turns(en_clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A few English clips joined with pauses, like someone speaking in turns; and its reference."""
    chosen = joined_clips(en_clips)
    path = join_clips(
        [c.path for c in chosen], tmp_path_factory.mktemp("live") / "turns.wav", PAUSE_S
    )
    return path, " ".join(c.reference for c in chosen)


def test_realtime_replay_captions_in_order_with_interims_and_journal(
    turns: tuple[Path, str], tmp_path: Path
) -> None:
    path, reference = turns
    # --gpu auto: on a machine without CUDA (CI) this also checks the fallback to the CPU.
    result = run_cli(
        "file", str(path), "--realtime", "--jsonl", "--gpu", "auto", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    finals = [e for e in events if e["type"] == "final"]
    assert wer(reference, " ".join(f["text"] for f in finals)) < 0.35
    assert [f["seq"] for f in finals] == list(range(len(finals)))
    starts = [f["start"] for f in finals]
    assert starts == sorted(starts)
    assert all(f["end"] >= f["start"] for f in finals)
    assert all({"latency", "eos_wait", "processing", "asr"} <= f["latency"].keys() for f in finals)
    # Interims come while each turn is spoken: before its final, with text the final then confirms.
    assert events[0]["type"] == "interim"
    spoken = {
        e["utterance"] for e in events if e["type"] == "interim" and (e["committed"] or e["tail"])
    }
    assert len(spoken) >= 2  # interims for more than one turn
    assert all(e["latency"] > 0 for e in events if e["type"] == "interim")
    stats = events[-1]
    assert (
        stats["type"] == "stats"
        and stats["finals"] == len(finals)
        and stats["dropped_seconds"] == 0
    )
    journal = [
        json.loads(line) for line in (tmp_path / "turns.journal.jsonl").read_text().splitlines()
    ]
    assert [(j["seq"], j["text"], j["start"]) for j in journal] == [
        (f["seq"], f["text"], f["start"]) for f in finals
    ]
    assert (tmp_path / "turns.srt").is_file()


def test_realtime_silence_and_noise_give_no_captions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    silence = write_wav(tmp_path / "silence.wav", np.zeros(3 * SAMPLE_RATE, np.float32))
    noise = write_wav(
        tmp_path / "noise.wav", rng.normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32)
    )
    result = run_cli(
        "file", str(silence), str(noise), "--realtime", "--plain", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 1
    assert result.stdout.strip() == ""
    assert f"error: {silence}: no speech found" in result.stderr
    assert f"error: {noise}: no speech found" in result.stderr
    assert "Traceback" not in result.stderr


def test_nothing_invented_over_the_pause_after_the_speech(
    en_clips: list[Clip], tmp_path: Path
) -> None:
    """This clip, then silence (as a live client sends it), primed with "Quilter": Whisper tiny.en
    wrote "Thank you so much for watching, and I'll see you in the next one." over the pause its
    live final keeps after the speech, as a second segment; it lies past the VAD's end of speech."""
    clip = next((c for c in en_clips if "sense_and_sensibility_0930" in c.path.name), None)
    if clip is None:
        pytest.skip("needs the shared sense_and_sensibility_0930 recording")
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    audio = np.concatenate([*decode_blocks(clip.path), pause])
    path = write_wav(tmp_path / "then_silence.wav", audio)
    result = run_cli(
        "file", str(path), "--realtime", "--jsonl", "--no-interim", "--initial-prompt", "Quilter",
        "--output-dir", str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    finals = [e for e in map(json.loads, result.stdout.splitlines()) if e["type"] == "final"]
    text = " ".join(f["text"] for f in finals)
    assert finals and wer(clip.reference, text) < 0.35, text


def test_file_gpu_without_cuda_is_a_one_line_error(turns: tuple[Path, str]) -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("a CUDA device is present")
    result = run_cli("file", str(turns[0]), "--gpu", timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --gpu: CTranslate2 sees no CUDA device")
    assert len(result.stderr.strip().splitlines()) == 1
