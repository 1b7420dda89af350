"""`livecap bench` end to end: one real run (tiny.en, real
speech, live replay, baseline), checked several ways."""

from __future__ import annotations

import json
from pathlib import Path

import jiwer
import numpy as np
import pytest

from conftest import SHARED_AUDIO, run_cli
from livecap.bench.plan import SAMPLE, load_inputs
from livecap.bench.wer import normalize

pytestmark = pytest.mark.slow

JFK = SHARED_AUDIO / "misc" / "jfk.flac"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    clip = JFK if JFK.with_name(JFK.name + ".txt").is_file() else SAMPLE
    out = tmp_path_factory.mktemp("bench")
    done = run_cli(
        "bench", str(clip), "--model", "tiny.en", "--json", str(out / "b.json"), "--plot",
        str(out / "b.png"), timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return json.loads((out / "b.json").read_text(encoding="utf-8")), out / "b.png", done.stdout


def only_config(document: dict) -> dict:
    assert len(document["configurations"]) == 1
    return document["configurations"][0]


def test_rtf_is_wall_time_over_audio_time(bench: tuple[dict, Path, str]) -> None:
    document, _, _ = bench
    config = only_config(document)
    run = config["runs"][0]["livecap"]
    audio = sum(f["audio_s"] for f in run["files"])
    assert audio == pytest.approx(document["inputs"][0]["duration_s"], abs=0.1)
    s = config["summary"]
    assert s["rtf"]["median"] == pytest.approx(
        sum(f["wall_s"] for f in run["files"]) / audio, rel=1e-6
    )
    assert s["rtf_asr"]["median"] == pytest.approx(s["asr_s"]["median"] / audio, rel=1e-6)
    assert 0 < s["decode_s"]["median"] and 0 < s["vad_s"]["median"] and 0 < s["asr_s"]["median"]
    assert s["rtf_translate"] is None  # no translation asked for
    assert s["load_s"]["median"] > 0 and s["peak_rss_mb"]["median"] > 50


def test_live_latency_figures_are_consistent(bench: tuple[dict, Path, str]) -> None:
    document, _, _ = bench
    config = only_config(document)
    s = config["summary"]
    live = config["runs"][0]["livecap"]["live"]
    # under the 60 s cap
    assert live["audio_s"] == pytest.approx(document["inputs"][0]["duration_s"], abs=0.1)
    latencies = [entry["latency"] for entry in live["latencies"]]
    assert latencies, "live mode delivered no final caption"
    for entry in live["latencies"]:
        assert entry["eos_wait"] + entry["processing"] == pytest.approx(entry["latency"], abs=2e-3)
    assert s["final_p50"]["median"] <= s["final_p95"]["median"] <= s["final_max"]["median"]
    assert s["final_p50"]["median"] == pytest.approx(float(np.percentile(latencies, 50)))
    assert s["final_max"]["median"] == max(latencies)
    assert (
        s["dropped_s"]["median"] == live["dropped_s"] and 0 <= live["dropped_s"] < live["audio_s"]
    )
    # the deepest queue the run saw
    assert s["max_pending_finals"]["median"] == live["max_pending_finals"]


def test_wer_equals_jiwer_on_normalised_texts(bench: tuple[dict, Path, str]) -> None:
    document, _, _ = bench
    config = only_config(document)
    for side, key in (("livecap", "wer"), ("baseline", "baseline_wer")):
        files = config["runs"][0][side]["files"]
        expected = jiwer.wer(
            [normalize(f["reference"]) for f in files], [normalize(f["text"]) for f in files]
        )
        assert config["summary"][key]["median"] == pytest.approx(expected)
        assert expected < 0.3, f"{side} transcribed the clip badly: {files[0]['text']!r}"


def test_baseline_is_measured_with_ratio(bench: tuple[dict, Path, str]) -> None:
    document, _, stdout = bench
    config = only_config(document)
    s = config["summary"]
    assert s["baseline_wall_s"]["median"] > 0 and s["baseline_load_s"]["median"] > 0
    assert config["ratio"]["wall_s"] == pytest.approx(
        s["wall_s"]["median"] / s["baseline_wall_s"]["median"]
    )
    for side, key in (("livecap", "nonspeech_words"), ("baseline", "baseline_nonspeech_words")):
        said = config["runs"][0][side]["nonspeech_text"]  # what each said on the non-speech clip
        assert s[key]["median"] == len(normalize(said).split()), (side, said)
    assert (
        config["settings"]["model"] == "tiny.en"
        and config["settings"]["compute_type_used"] == "int8"
    )
    assert (
        "faster-whisper" in stdout and config["label"] in stdout and "final latency p50" in stdout
    )


def test_plot_is_a_png(bench: tuple[dict, Path, str]) -> None:
    _, png, _ = bench
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as image:
        assert image.width > 400 and image.height > 200


def test_bundled_sample_has_its_reference() -> None:
    (item,) = load_inputs([])
    assert item.path == SAMPLE and item.reference and 10 < item.duration < 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/file.wav"], "no such file"),
        (["--plot", "out.jpg"], "give a .png file name"),
        (["--workers", "1,x"], "workers must be a whole number"),
        (["--json", "/no/such/dir/b.json"], "folder does not exist"),
    ],
)
def test_bad_input_is_a_one_line_error(args: list[str], message: str) -> None:
    done = run_cli("bench", *args, "--no-live", "--no-baseline")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_manifest_without_file_column(tmp_path: Path) -> None:
    manifest = tmp_path / "m.tsv"
    manifest.write_text("path\treference_text\na.wav\thello\n", encoding="utf-8")
    done = run_cli("bench", str(manifest))
    assert done.returncode == 2 and "not a manifest" in done.stderr


def test_capacity_is_the_largest_level_that_held() -> None:
    from livecap.bench.streams import capacity

    def level(n: int, p95: float | None, refused: int = 0, dropped: float = 0.0, words: float = 1.0,
              waited: int = 0) -> dict:
        return {
            "streams": n,
            "final_p95": p95,
            "committed_p95": words,
            "refused": refused,
            "dropped_s": dropped,
            "waited": waited,
        }

    assert capacity([level(1, 0.9), level(2, 1.8), level(4, 2.6)]) == 2
    assert capacity([level(1, 0.9), level(2, 1.5, dropped=0.3), level(4, 1.9, refused=1)]) == 1
    assert capacity([level(1, 0.9), level(2, 1.5, words=2.6), level(4, 1.9, waited=1)]) == 1
    assert capacity([level(1, None)]) == 0


def test_streams_through_a_real_server(tmp_path: Path) -> None:
    """`--streams`: a real `livecap serve` on loopback, two
    concurrent clients of real speech at 1x."""
    out = tmp_path / "streams.json"
    run = run_cli("bench", "--streams", "1,2", "--stream-seconds", "6", "--json", str(out))
    assert run.returncode == 0, run.stderr
    document = json.loads(out.read_text())
    (result,) = document["streams"]
    assert [level["streams"] for level in result["levels"]] == [1, 2]
    for level in result["levels"]:
        assert level["finals"] >= level["streams"] and level["refused"] == 0
        assert level["committed_p95"] is not None and level["estimate"] >= 1
        assert level["wer"] is not None and level["wer"] < 0.35
        assert 0 < level["compute_per_audio_s"] < 5
        assert 0 < level["worst_stream_p95"] and level["final_p50"] <= level["final_p95"]
    assert result["capacity"] in (0, 1, 2)
    reactions = result["reactions"]  # the timings the server tests leave to the bench
    assert reactions["delete_publisher_s"] > 0 and reactions["upload_stop_s"] > 0
    assert reactions["upload_busy_after_s"] >= 0 and reactions["upload_calls_after"] >= 0
    assert "worst" in run.stdout and "quiet publisher closed after" in run.stdout
