"""Caption files: txt, srt, vtt, tsv, json, verbose_json, and the append-as-you-go JSONL journal."""

from __future__ import annotations

import json
import stat
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from livecap.config import FORMATS, Config
from livecap.errors import LivecapError
from livecap.messages import Caption, Word
from livecap.output.atomic import write_atomic
from livecap.output.records import final_record
from livecap.output.subtitles import Cue, Layout, split_caption


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


@dataclass(frozen=True)
class OutputOptions:
    """How captions become files. With a translation, `tracks` says which text files to write:
    the original as `<stem>.<ext>`, the translation as `<stem>.<lang>.<ext>` (the name media players
    pick up as a subtitle track in that language), or both."""

    tracks: str = "both"  # original | translation | both
    translate_to: str | None = None
    task: str = "transcribe"  # Whisper's `translate` task writes English whatever was spoken
    layout: Layout = Layout()

    @classmethod
    def from_config(cls, config: Config) -> OutputOptions:
        out = config.output
        return cls(out.subtitle_text, config.translate.translate_to, config.asr.task,
                   Layout(out.max_line_width, out.max_line_count))


def track_text(caption: Caption, track: str) -> str:
    """A caption's text in a track; a failed translation shows the original (marked in json)."""
    if track == "translation" and caption.translation is not None:
        return caption.translation
    return caption.text


def speaker_turns(captions: Sequence[Caption]) -> list[str | None]:
    """For each caption, its speaker where the speaker changes (None elsewhere and without labels):
    text formats name a speaker when a new one starts talking."""
    out, previous = [], None
    for c in captions:
        out.append(c.speaker if c.speaker is not None and c.speaker != previous else None)
        previous = c.speaker
    return out


def _named(caption: Caption, track: str, speaker: str | None) -> tuple[str, tuple[Word, ...]]:
    """A caption's text and words, led by "[S2]" when a new speaker starts (a word of
    its own, at the caption's start, so that the layout and word times stay right)."""
    text, words = track_text(caption, track), caption.words if track == "original" else ()
    if speaker is None:
        return text, words
    tag = f"[{speaker}]"
    return f"{tag} {text}", (
        (Word(caption.start, caption.start, f" {tag}", 1.0),) + words if words else ()
    )


def cues(
    captions: Sequence[Caption], track: str, layout: Layout, *, tags: bool = True
) -> list[Cue]:
    """Subtitle cues of a track; the original is split at its word times, a translation
    by characters. `tags`: a new speaker's first cue starts with "[S2]"."""
    out = []
    for c, speaker in zip(captions, speaker_turns(captions)):
        text, words = _named(c, track, speaker if tags else None)
        out += split_caption(text, c.start, c.end, layout, words)
    return out


def render_txt(captions: Sequence[Caption], track: str = "original") -> str:
    """One caption a line; "[S2] " where a new speaker starts."""
    return "".join(
        (f"[{speaker}] " if speaker else "") + track_text(c, track) + "\n"
        for c, speaker in zip(captions, speaker_turns(captions))
    )


def render_srt(
    captions: Sequence[Caption], track: str = "original", layout: Layout = Layout()
) -> str:
    """SubRip cues, laid out by `layout`."""
    return "\n".join(
        f"{i}\n{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}\n{cue.text}\n"
        for i, cue in enumerate(cues(captions, track, layout), start=1)
    )


def render_vtt(
    captions: Sequence[Caption], track: str = "original", layout: Layout = Layout()
) -> str:
    """WebVTT cues, laid out by `layout`; with speaker
    labels, each cue is a voice span (`<v S2>`)."""
    voiced = [(cue, c.speaker) for c in captions for cue in cues([c], track, layout, tags=False)]
    body = "\n".join(
        f"{_clock(cue.start, '.')} --> "
        f"{_clock(cue.end, '.')}\n{f'<v {speaker}>' if speaker else ''}{cue.text}\n"
        for cue, speaker in voiced
    )
    return "WEBVTT\n\n" + body


def render_tsv(captions: Sequence[Caption], track: str = "original") -> str:
    """openai-whisper's tsv: start and end in integer milliseconds, one caption a row."""
    rows = (
        f"{round(c.start * 1000)}\t{round(c.end * 1000)}\t{'[' + speaker + '] ' if speaker else ''}"
        f"{' '.join(track_text(c, track).split())}\n"
        for c, speaker in zip(captions, speaker_turns(captions))
    )
    return "start\tend\ttext\n" + "".join(rows)


def _language(captions: Sequence[Caption], task: str) -> str | None:
    """The language of the text: English for Whisper's
    translate task, else the one most detected."""
    languages = Counter(c.language for c in captions if c.language)
    spoken = languages.most_common(1)[0][0] if languages else None
    return "en" if task == "translate" else spoken


def render_json(
    captions: Sequence[Caption],
    source: str,
    duration: float | None,
    options: OutputOptions = OutputOptions(),
) -> str:
    """Everything in one file: segments with words, language and translation. Under `--task
    translate` the text is English; each segment keeps the language spoken as `spoken_language`."""
    segments = [c.to_dict() for c in captions]
    if options.task == "translate":
        for segment in segments:
            segment["spoken_language"], segment["language"] = segment["language"], "en"
    document = {
        "source": source,
        "duration": duration,
        "task": options.task,
        "language": _language(captions, options.task),
        "text": " ".join(c.text for c in captions),
        "segments": segments,
    }
    if any(c.translation is not None for c in captions):
        document["translation_language"] = options.translate_to
        document["translation"] = " ".join(track_text(c, "translation") for c in captions)
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def render_verbose_json(
    captions: Sequence[Caption], duration: float | None, task: str = "transcribe"
) -> str:
    """The shape of OpenAI's `verbose_json` transcription, with the fields livecap has (no seek,
    tokens or log-probabilities): task, language, duration, text, segments, words."""
    document = {
        "task": task,
        "language": _language(captions, task),
        "duration": duration,
        "text": " ".join(c.text for c in captions),
        "segments": [
            {"id": i, "start": round(c.start, 3), "end": round(c.end, 3), "text": c.text,
             **({"speaker": c.speaker} if c.speaker is not None else {})}
            for i, c in enumerate(captions)
        ],
        "words": [
            {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
            for c in captions
            for w in c.words
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def render_files(
    captions: Sequence[Caption],
    stem: str,
    formats: Sequence[str],
    *,
    source: str,
    duration: float | None,
    options: OutputOptions = OutputOptions(),
) -> dict[str, str]:
    """Every file to write, name -> content. Text formats get
    one file per track; `all` means every format."""
    formats = FORMATS if "all" in formats else formats
    translated = any(c.translation is not None for c in captions)
    tracks = {"original": stem}
    if translated:
        tagged = f"{stem}.{options.translate_to or 'translation'}"
        named = {"original": stem, "translation": tagged}
        tracks = {track: name for track, name in named.items() if options.tracks in (track, "both")}
    text_renderers = {
        "txt": lambda track: render_txt(captions, track),
        "srt": lambda track: render_srt(captions, track, options.layout),
        "vtt": lambda track: render_vtt(captions, track, options.layout),
        "tsv": lambda track: render_tsv(captions, track),
    }
    files: dict[str, str] = {}
    for fmt in formats:
        if fmt == "json":
            files[f"{stem}.json"] = render_json(captions, source, duration, options)
        elif fmt == "verbose_json":
            files[f"{stem}.verbose.json"] = render_verbose_json(captions, duration, options.task)
        else:
            files.update(
                {f"{name}.{fmt}": text_renderers[fmt](track) for track, name in tracks.items()}
            )
    return files


def write_outputs(
    captions: Sequence[Caption],
    output_dir: Path,
    stem: str,
    formats: Sequence[str],
    *,
    source: str,
    duration: float | None,
    options: OutputOptions = OutputOptions(),
    notes: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write every requested format (see `render_files`) into `output_dir`, each atomically (a
    temporary file renamed over the old one); returns the paths written. `notes` (what went wrong:
    damage skipped, a partial run) are added to the json document."""
    files = render_files(captions, stem, formats, source=source, duration=duration, options=options)
    if notes and f"{stem}.json" in files:
        document = {**json.loads(files[f"{stem}.json"]), **notes}
        files[f"{stem}.json"] = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    written = []
    for name, content in files.items():
        write_atomic(output_dir / name, content)
        written.append(output_dir / name)
    return written


class Journal:
    """Writes each final caption as one JSON line the moment it is produced, flushed to disk, so a
    killed run leaves its captions behind (`read_journal` gets them back). Each run starts a new
    journal: one journal, one run. The file is made at the first caption (a run that finds no
    speech leaves none). A write that fails (a full disk) stops the journaling, not the run: the
    captions are still in memory and the caller, told by `error`, saves them another way."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self._file: IO[str] | None = None

    def append(self, caption: Caption, latency: dict[str, float] | None = None) -> None:
        if self.error is not None:
            return
        try:
            if self._file is None:
                self._file = self.path.open("w", encoding="utf-8")
            self._file.write(json.dumps(final_record(caption, latency), ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as error:
            self.error = self._failure(error)
            self.close()

    def _failure(self, error: OSError) -> str:
        return f"cannot write journal {self.path}: {error.strerror or error}"

    def close(self) -> None:
        """Close the file; one that holds nothing (a failed first write) is removed."""
        if self._file is None:
            return
        try:
            self._file.close()  # the file is closed even when its last flush fails
        except OSError as error:
            self.error = self.error or self._failure(error)
        self._file = None
        try:
            info = self.path.stat()
            if stat.S_ISREG(info.st_mode) and info.st_size == 0:
                self.path.unlink()
        except OSError:
            pass


def read_journal(path: Path) -> list[Caption]:
    """The final captions a journal holds, in order; a last line cut short by a kill is ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise LivecapError(f"{path}: cannot read ({error.strerror or error})") from None
    captions = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the write the kill interrupted
            raise LivecapError(
                f"{path}: line {number} is not JSON: not a livecap journal"
            ) from None
        if not isinstance(record, dict) or record.get("type") != "final":
            raise LivecapError(
                f"{path}: line {number} is not a final caption: not a livecap journal"
            )
        words = tuple(Word(w["start"], w["end"], w["word"], w["probability"], w.get("speaker"))
                      for w in record.get("words", ()))
        captions.append(
            Caption(
                "recovered",
                record["seq"],
                record["start"],
                record["end"],
                record["text"],
                True,
                record.get("language"),
                record.get("translation"),
                record.get("translation_failed", False),
                words=words,
                utterance=record.get("utterance", 0),
                speaker=record.get("speaker"),
            )
        )
    return captions
