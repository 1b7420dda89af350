"""Caption files and what the terminal shows: subtitle wrapping, translated tracks, tsv and
verbose_json, the dimmed interim tail, the file progress bar and the bench table at 80 columns.

Rendering is tested on synthetic captions; the slow tests run real models on real speech."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import srt
import webvtt
from conftest import SHARED_AUDIO, Clip, run_cli
from rich.console import Console

from livecap.cli.view import FileProgressView, caption_text, interim_text
from livecap.messages import Caption, InterimCaption, Word
from livecap.output.subtitles import Layout
from livecap.output.writers import OutputOptions, render_files, render_srt, render_tsv, render_vtt

LONG = (
    "Then you go into your ComfyUI folder again and in the custom nodes folder you will find everything "
    "that was installed, supercalifragilisticexpialidocious-and-even-longer-than-a-line words included."
)


def timed_caption(text: str, start: float = 2.0, step: float = 0.4, translation: str | None = None) -> Caption:
    """A final caption whose words are spoken one every `step` seconds."""
    words = tuple(Word(start + i * step, start + i * step + step * 0.8, f" {w}", 0.9) for i, w in enumerate(text.split()))
    return Caption("s", 0, start, words[-1].end, text, True, language="en", translation=translation, words=words)


def parsed_cues(text: str, fmt: str, tmp_path: Path) -> list[tuple[float, float, str]]:
    """Cues read back by the srt and webvtt-py libraries: (start, end, text)."""
    if fmt == "srt":
        return [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in srt.parse(text)]
    path = tmp_path / "cues.vtt"
    path.write_text(text, encoding="utf-8")
    return [(_seconds(c.start), _seconds(c.end), c.text) for c in webvtt.read(str(path))]


def _seconds(clock: str) -> float:
    """A WebVTT time (webvtt-py's *_in_seconds drop the milliseconds)."""
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
@pytest.mark.parametrize("layout", [Layout(), Layout(20, 1), Layout(12, 3)])
@pytest.mark.parametrize("timed", [True, False])
def test_wrapping_limits_respected_on_every_cue(fmt: str, layout: Layout, timed: bool, tmp_path: Path) -> None:
    caption = timed_caption(LONG)
    if not timed:  # no word times: split in proportion to characters
        caption = Caption("s", 0, caption.start, caption.end, LONG, True)
    render = render_srt if fmt == "srt" else render_vtt
    cues = parsed_cues(render([caption], "original", layout), fmt, tmp_path)
    assert len(cues) > 1
    for _, _, text in cues:
        lines = text.split("\n")
        assert len(lines) <= layout.max_line_count, text
        assert all(0 < len(line) <= layout.max_line_width for line in lines), text
    # no word lost (an over-long word is cut into line-sized pieces), cues back to back over the caption
    assert "".join("".join(c[2].split()) for c in cues) == "".join(LONG.split())
    assert cues[0][0] == pytest.approx(caption.start, abs=1e-3) and cues[-1][1] == pytest.approx(caption.end, abs=1e-3)
    for (_, end, _), (start, _, _) in zip(cues, cues[1:]):
        assert end == pytest.approx(start, abs=1e-3)
    assert all(start < end for start, end, _ in cues)


def test_cues_start_at_the_time_of_their_first_word(tmp_path: Path) -> None:
    caption = timed_caption(LONG.split(" super")[0])  # no over-long word
    cues = parsed_cues(render_srt([caption], "original", Layout(42, 1)), "srt", tmp_path)
    assert len(cues) >= 3
    starts = {w.word.strip(): w.start for w in reversed(caption.words)}  # first occurrence of each word
    for start, _, text in cues[1:]:
        assert start == pytest.approx(starts[text.split()[0]], abs=1e-3), text


def test_translation_goes_to_its_own_language_file() -> None:
    captions = [timed_caption("Guten Morgen zusammen", translation="Good morning everyone")]
    files = render_files(captions, "talk", ("txt", "srt", "json"), source="talk.wav", duration=3.0,
                         options=OutputOptions(translate_to="en"))
    assert set(files) == {"talk.txt", "talk.en.txt", "talk.srt", "talk.en.srt", "talk.json"}
    assert files["talk.txt"] == "Guten Morgen zusammen\n" and files["talk.en.txt"] == "Good morning everyone\n"
    document = json.loads(files["talk.json"])
    assert document["translation_language"] == "en" and document["translation"] == "Good morning everyone"
    only = render_files(captions, "talk", ("srt",), source="talk.wav", duration=3.0,
                        options=OutputOptions(tracks="translation", translate_to="en"))
    assert set(only) == {"talk.en.srt"}
    untranslated = [timed_caption("Guten Morgen zusammen")]
    assert set(render_files(untranslated, "talk", ("srt",), source="t", duration=3.0,
                            options=OutputOptions(translate_to="en"))) == {"talk.srt"}


def test_all_formats_tsv_and_verbose_json() -> None:
    captions = [timed_caption("hello there", start=1.0), timed_caption("general\tKenobi", start=5.0)]
    files = render_files(captions, "t", ("all",), source="t.wav", duration=9.0, options=OutputOptions(task="translate"))
    assert set(files) == {"t.txt", "t.srt", "t.vtt", "t.tsv", "t.json", "t.verbose.json"}
    assert render_tsv(captions) == "start\tend\ttext\n1000\t1720\thello there\n5000\t5720\tgeneral Kenobi\n"
    verbose = json.loads(files["t.verbose.json"])
    assert verbose["task"] == "translate" and verbose["language"] == "en" and verbose["duration"] == 9.0
    assert [s["id"] for s in verbose["segments"]] == [0, 1] and verbose["text"] == "hello there general\tKenobi"
    assert [w["word"] for w in verbose["words"]] == ["hello", "there", "general", "Kenobi"]
    assert set(verbose["words"][0]) == {"word", "start", "end"}
    document = json.loads(files["t.json"])  # Whisper's translate task writes English, whatever was spoken
    assert document["language"] == "en" and document["segments"][0]["spoken_language"] == "en"


def _dim_text(text, console: Console) -> str:  # noqa: ANN001 - a rich Text
    """The characters rendered dim."""
    return "".join(s.text for s in text.render(console) if s.style and s.style.dim)


def test_only_the_unstable_tail_is_dim() -> None:
    console = Console(width=100)
    final = Caption("s", 0, 65.0, 67.0, "committed words", True, translation="übersetzt")
    assert _dim_text(caption_text(final), console).strip() == "[01:05]"
    interim = InterimCaption("s", 1, committed="the stable part", tail="still changing", new_words=2, t_audio_end=0.0)
    assert _dim_text(interim_text(interim), console).split() == ["…", "still", "changing"]
