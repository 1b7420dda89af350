"""Word latency is measured from livecap's output alone: unit checks of the scorer, then a real
realtime replay whose events carry what the scorer needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Clip, manifest, run_cli
from livecap.bench.latency import (
    ShownWord,
    TimedWord,
    caption_lags,
    shown_words,
    word_latencies,
)
from livecap.bench.mix import (
    READING_MIN_S,
    READING_ROTATION,
    build_mix,
    build_reading,
    load_sections,
)


def final(utterance: int, emitted_at: float, words: list[tuple[str, float, float]]) -> dict:
    return {"type": "final", "utterance": utterance, "emitted_at": emitted_at,
            "words": [{"word": w, "start": a, "end": b} for w, a, b in words]}


def interim(utterance: int, emitted_at: float, committed: str) -> dict:
    return {
        "type": "interim",
        "utterance": utterance,
        "emitted_at": emitted_at,
        "committed": committed,
        "tail": "",
    }


def test_a_word_is_shown_when_an_interim_first_commits_it() -> None:
    events = [
        interim(0, 1.0, ""),
        interim(0, 1.5, "hello"),
        interim(0, 2.0, "hello big"),
        final(0, 3.0, [("Hello", 0.2, 0.6), ("big", 0.7, 1.0), ("world.", 1.1, 1.6)]),
    ]
    shown = shown_words(events)
    assert [(w.word, w.committed_at, w.final_at) for w in shown] == [
        ("hello", 1.5, 3.0), ("big", 2.0, 3.0), ("world", 3.0, 3.0),
    ]


def test_a_committed_word_the_final_changed_counts_at_the_final() -> None:
    events = [interim(4, 1.0, "hallo"), final(4, 2.0, [("hello", 0.1, 0.5)])]
    assert shown_words(events)[0].committed_at == 2.0


def test_words_carried_over_a_cut_in_speech_count_from_their_first_commit() -> None:
    cut = [
        interim(0, 1.0, "so we"),
        interim(0, 2.0, "so we went down to"),
        # cut in speech after "went": the next utterance's first interim carries "down to"
        interim(1, 2.4, "down to the"),
        final(0, 2.6, [("So", 0.0, 0.2), ("we", 0.2, 0.4), ("went", 0.4, 0.8)]),
        final(1, 4.0, [("down", 0.8, 1.0), ("to", 1.0, 1.1), ("the", 1.1, 1.2), ("sea", 1.2, 1.6)]),
    ]
    shown = [(w.word, w.committed_at) for w in shown_words(cut)]
    assert shown == [
        ("so", 1.0), ("we", 1.0), ("went", 2.0), ("down", 2.0), ("to", 2.0), ("the", 2.4),
        ("sea", 4.0),
    ]
    early_final = final(0, 2.2, [("So", 0.0, 0.2), ("we", 0.2, 0.4), ("went", 0.4, 0.8)])
    late = [*cut[:2], early_final, cut[2], cut[4]]  # the final cleared the interim line first
    assert [w.committed_at for w in shown_words(late)][3:6] == [2.4, 2.4, 2.4]


def test_a_caption_lags_from_its_last_word() -> None:
    events = [
        interim(0, 1.0, "so we"),
        {**final(0, 9.0, [("So", 0.0, 0.2), ("we", 0.2, 0.4)]), "text": "So we"},
        final(0, 9.0, [("went", 6.0, 6.5)]),
        final(1, 10.0, []),  # no words: no figure
    ]
    assert caption_lags(events) == pytest.approx([8.6, 2.5])


def test_latency_is_measured_against_the_reference_words_matched() -> None:
    reference = [TimedWord("the", 0.0, 0.3), TimedWord("cat", 0.3, 0.6), TimedWord("sat", 0.6, 1.0)]
    shown = [
        ShownWord("the", 1.0, 2.0, 0.0, 0.3),
        ShownWord("dog", 1.2, 2.0, 0.3, 0.6),
        ShownWord("sat", 1.5, 2.0, 0.6, 1.0),
    ]
    found = word_latencies(reference, shown)
    assert found["committed"] == pytest.approx([0.7, 0.5])  # "cat"/"dog" is an error: no latency
    assert found["final"] == pytest.approx([1.7, 1.0])


@pytest.mark.slow
def test_a_reading_reads_on_long_clips_in_turn_without_noise(tmp_path: Path) -> None:
    long = [
        (c.path, c.reference) for c in manifest()
        if c.language == "en" and c.duration >= READING_MIN_S and c.path.is_file()
    ]
    if not long:
        pytest.skip("the shared long English readings are absent")
    sections = build_reading(long, tmp_path / "reading.wav", minutes=2)
    assert {s.kind for s in sections} <= {"speech", "pause"}
    spoken = [s.degradation for s in sections if s.kind == "speech"]
    assert spoken == [READING_ROTATION[i % len(READING_ROTATION)] for i in range(len(spoken))]
    assert sum(s.end - s.start for s in sections if s.kind == "pause") < 0.1 * sections[-1].end


@pytest.mark.slow
def test_mix_builder_covers_the_audio_with_labelled_sections(
    en_clips: list[Clip], tmp_path: Path
) -> None:
    out = tmp_path / "mix.wav"
    build_mix([(c.path, c.reference) for c in en_clips[:3]], out, minutes=0.5, nonspeech_every=2)
    sections = load_sections(out)
    assert sections[0].start == 0.0
    assert all(a.end == pytest.approx(b.start) for a, b in zip(sections, sections[1:]))
    kinds = {s.kind for s in sections}
    assert {"speech", "pause"} <= kinds and kinds & {
        "silence",
        "white_noise",
        "brown_noise",
        "buzz",
    }
    assert {s.degradation for s in sections if s.kind == "speech"} >= {"clean", "far"}
    import wave

    with wave.open(str(out)) as handle:
        assert handle.getnframes() / handle.getframerate() == pytest.approx(
            sections[-1].end, abs=0.01
        )


@pytest.mark.slow
def test_realtime_events_carry_utterance_words_and_stream_clock(
    en_clips: list[Clip], tmp_path: Path
) -> None:
    clip = max(en_clips, key=lambda c: c.duration)
    run = run_cli("file", str(clip.path), "--realtime", "--jsonl", "--output-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    finals = [e for e in events if e["type"] == "final"]
    interims = [e for e in events if e["type"] == "interim"]
    assert finals and interims
    shown_at = [e["emitted_at"] for e in events if e["type"] in ("final", "interim")]
    assert shown_at == sorted(shown_at) and shown_at[-1] <= clip.duration + 5
    for event in finals:
        assert event["words"] and event["start"] - 0.05 <= event["words"][0]["start"]
        assert event["words"][-1]["end"] <= event["end"] + 0.05
        assert event["emitted_at"] >= event["end"] - 0.05  # never shown before it was spoken
    assert {e["utterance"] for e in interims} <= {e["utterance"] for e in finals}
    words = [TimedWord(w["word"], w["start"], w["end"]) for e in finals for w in e["words"]]
    found = word_latencies(words, shown_words(events))
    assert len(found["final"]) == len(words)
    # a word is never shown before it was spoken (word times from the final itself: allow their
    # error)
    assert min(found["committed"]) >= -0.3 and all(
        c <= f for c, f in zip(found["committed"], found["final"])
    )


def test_a_phrase_said_twice_matches_by_time() -> None:
    """Long mixes repeat themselves: each shown word takes the reference word said when it was."""
    reference = [TimedWord("hello", 1.0, 1.5), TimedWord("hello", 100.0, 100.5)]
    shown = [ShownWord("hello", 101.0, 101.5, 100.0, 100.4)]
    assert word_latencies(reference, shown)["committed"] == pytest.approx([0.5])
