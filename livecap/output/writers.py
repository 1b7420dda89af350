"""Caption files: txt, srt, vtt, json, and the append-as-you-go JSONL journal."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from livecap.errors import LivecapError
from livecap.messages import Caption
from livecap.output.records import final_record


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitle_text(caption: Caption, which: str) -> str:
    """The text a subtitle shows: original, translation, or both on two lines."""
    translation = caption.translation if caption.translation is not None else caption.text
    if which == "translation":
        return translation
    if which == "both" and caption.translation is not None:
        return f"{caption.text}\n{translation}"
    return caption.text


def render_txt(captions: Sequence[Caption], which: str = "original") -> str:
    return "".join(subtitle_text(c, which) + "\n" for c in captions)


def render_srt(captions: Sequence[Caption], which: str = "original") -> str:
    return "\n".join(
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{subtitle_text(c, which)}\n"
        for i, c in enumerate(captions, start=1)
    )


def render_vtt(captions: Sequence[Caption], which: str = "original") -> str:
    cues = "\n".join(
        f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{subtitle_text(c, which)}\n" for c in captions
    )
    return "WEBVTT\n\n" + cues


def render_json(captions: Sequence[Caption], source: str, duration: float | None) -> str:
    languages = Counter(c.language for c in captions if c.language)
    document = {
        "source": source,
        "duration": duration,
        "language": languages.most_common(1)[0][0] if languages else None,
        "text": " ".join(c.text for c in captions),
        "segments": [c.to_dict() for c in captions],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def write_outputs(
    captions: Sequence[Caption],
    output_dir: Path,
    stem: str,
    formats: Sequence[str],
    *,
    source: str,
    duration: float | None,
    subtitle: str = "original",
) -> list[Path]:
    """Write every requested format as `output_dir/stem.ext`; returns the paths written."""
    renderers = {
        "txt": lambda: render_txt(captions, subtitle),
        "srt": lambda: render_srt(captions, subtitle),
        "vtt": lambda: render_vtt(captions, subtitle),
        "json": lambda: render_json(captions, source, duration),
    }
    written = []
    for fmt in formats:
        path = output_dir / f"{stem}.{fmt}"
        try:
            path.write_text(renderers[fmt](), encoding="utf-8")
        except OSError as error:
            raise LivecapError(f"cannot write {path}: {error.strerror or error}") from None
        written.append(path)
    return written


def check_output_dir(output_dir: Path) -> None:
    """Fail early, before any work, when outputs could not be written."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".livecap-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise LivecapError(f"cannot write to output directory {output_dir}: {error.strerror or error}") from None


class Journal:
    """Appends each final caption as one JSON line the moment it is produced, flushed to disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file: IO[str] = path.open("a", encoding="utf-8")
        except OSError as error:
            raise LivecapError(f"cannot open journal {path}: {error.strerror or error}") from None

    def append(self, caption: Caption, latency: dict[str, float] | None = None) -> None:
        record = final_record(caption, latency)
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
