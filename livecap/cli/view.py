"""What the user sees: small rich renderables and the displays built from them.

A display receives events from one thread (the run loop) and never blocks the pipeline.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from dataclasses import replace
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from livecap.messages import Caption, InterimCaption, SpeakerRevision
from livecap.output.records import RecordDisplay
from livecap.pipeline.stats import StatsSnapshot


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def caption_text(caption: Caption) -> Text:
    """One final caption: its time, the text, and the translation beneath when there is one."""
    text = Text()
    # a style given to Text() would dim it all
    text.append(f"[{_clock(caption.start)}] ", style="dim")
    if caption.speaker is not None:
        text.append(f"{caption.speaker}: ", style=speaker_style(caption.speaker))
    text.append(caption.text)
    if caption.translation is not None:
        marker = " (translation failed)" if caption.translation_failed else ""
        text.append(f"\n        → {caption.translation}{marker}", style="red" if marker else "cyan")
    return text


SPEAKER_STYLES = ("bold cyan", "bold magenta", "bold green", "bold yellow", "bold blue", "bold red")


def speaker_style(speaker: str) -> str:
    """One colour per speaker (S1, S2, ...), the same everywhere."""
    number = int(speaker[1:]) if speaker[1:].isdigit() else 0
    return SPEAKER_STYLES[(number - 1) % len(SPEAKER_STYLES)]


def revised(captions: deque[Caption], event: SpeakerRevision) -> None:
    """Shown captions with revised speakers take their new ones."""
    labels = dict(event.labels)
    for i, c in enumerate(captions):
        if c.seq in labels:
            captions[i] = replace(c, speaker=labels[c.seq])


def interim_text(event: InterimCaption | None) -> Text:
    """The open utterance: committed words plain, the unstable tail dimmed."""
    if event is None:
        return Text("")
    text = Text()
    text.append("  … ", style="dim")
    text.append(event.committed)
    if event.tail:
        text.append((" " if event.committed else "") + event.tail, style="dim italic")
    return text


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}s"


def stats_footer(stats: StatsSnapshot, model: str, device: str, compute_type: str) -> Table:
    """Latency, RTF and load at a glance; turns red when the pipeline falls behind."""
    grid = Table.grid(padding=(0, 2))
    rtf = "–" if stats.rtf is None else f"{stats.rtf:.2f}"
    audio = stats.audio_seconds or 1.0
    compute = Text(
        f"finals {stats.asr_seconds / audio:.2f} + interims {stats.interim_asr_seconds / audio:.2f}"
        + (
            f" + translation {stats.translate_seconds / audio:.2f}"
            if stats.translate_seconds
            else ""
        )
        + (f" + speakers {stats.diarize_seconds / audio:.2f}" if stats.diarize_seconds else "")
        + (f", CPU {stats.cpu_per_audio_s:.2f}" if stats.cpu_per_audio_s is not None else ""),
        style="dim",
    )
    grid.add_row(
        Text(f"final p50 {_seconds(stats.final_p50)} p95 {_seconds(stats.final_p95)}"),
        Text(
            f"(wait {_seconds(stats.eos_wait_p50)} + work {_seconds(stats.processing_p50)})",
            style="dim",
        ),
        Text(f"interim p50 {_seconds(stats.interim_p50)}"),
        Text(f"RTF {rtf} (all compute per audio s)"),
    )
    behind = stats.behind_seconds > 2.0
    load = Text(
        f"queues: audio {stats.capture_depth_s:.1f}s, finals {stats.pending_finals}, interims "
        f"{stats.pending_interims}"
        f"  dropped {stats.dropped_seconds:.1f}s",
        style="red" if stats.dropped_seconds else "",
    )
    translate = (
        Text(
            f"translate p50 {_seconds(stats.translate_p50)} ({stats.translate_share:.0%} of "
            "latency)"
        )
        if stats.translate_p50 is not None and stats.translate_share is not None
        else Text("")
    )
    grid.add_row(
        load,
        Text(f"behind {stats.behind_seconds:.1f}s", style="bold red" if behind else "dim"),
        translate,
        Text(""),
    )
    grid.add_row(
        Text(f"{model} · {device} · {compute_type}", style="dim"), Text(""), Text(""), compute
    )
    return grid


class LiveView:
    """The rich live view: recent finals, the interim line and the stats footer."""

    def __init__(
        self, console: Console, model: str, device: str, compute_type: str, keep: int = 12
    ) -> None:
        self.console = console
        self._model = (model, device, compute_type)
        self._finals: deque[Caption] = deque(maxlen=keep)
        self._interim: InterimCaption | None = None
        self._stats: StatsSnapshot | None = None
        self._live = Live(
            console=console, refresh_per_second=10, transient=False, auto_refresh=False
        )

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [caption_text(c) for c in self._finals]
        parts.append(interim_text(self._interim))
        if self._stats is not None:
            parts.append(Text(""))
            parts.append(stats_footer(self._stats, *self._model))
        return Group(*parts)

    def start(self) -> None:
        self._live.update(self, refresh=True)
        self._live.start()

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        if self._finals.maxlen and len(self._finals) == self._finals.maxlen:
            self._live.console.print(caption_text(self._finals[0]))  # scrolls into history
        self._finals.append(caption)
        if self._interim is not None and self._interim.utterance <= caption.utterance:
            self._interim = None  # the next utterance's interim, already here, stays

    def interim(self, event: InterimCaption) -> None:
        self._interim = event

    def speakers(self, event: SpeakerRevision) -> None:
        revised(self._finals, event)

    def error(self, message: str) -> None:
        self._live.console.print(Text(f"error: {message}", style="red"))

    def tick(self, stats: StatsSnapshot) -> None:
        self._stats = stats
        self._live.refresh()

    def stop(self) -> None:
        self._interim = None
        self._live.refresh()
        self._live.stop()


class PlainView:
    """One line per final caption, for pipes, logs and `--plain`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._out = stream or sys.stdout

    def start(self) -> None:
        pass

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        who = f"{caption.speaker}: " if caption.speaker is not None else ""
        line = f"[{caption.start:8.2f} -> {caption.end:8.2f}] {who}{caption.text}"
        if caption.translation is not None:
            line += f" || {caption.translation}" + (
                " [translation failed]" if caption.translation_failed else ""
            )
        print(line, file=self._out, flush=True)

    def interim(self, event: InterimCaption) -> None:
        pass

    def speakers(self, event: SpeakerRevision) -> None:
        revised_ = ", ".join(f"#{seq} {speaker}" for seq, speaker in event.labels)
        print(f"(speakers revised: {revised_})", file=self._out, flush=True)

    def error(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)

    def tick(self, stats: StatsSnapshot) -> None:
        pass

    def stop(self) -> None:
        pass


class JsonlView(RecordDisplay):
    """Machine-readable events, one JSON object a line (the records of `livecap.output.records`):
    final, interim, speaker, error, and stats at the end; each names its `source`."""

    def __init__(self, stream: TextIO | None = None, source: str | None = None) -> None:
        super().__init__()
        self._out = stream or sys.stdout
        self._source = source

    def emit(self, record: dict[str, Any]) -> None:
        if self._source is not None:
            record = {**record, "source": self._source}
        print(json.dumps(record, ensure_ascii=False), file=self._out, flush=True)


class FileProgressView:
    """File mode on a terminal: captions print as they complete, above a progress bar.

    The bar follows the captions shown (the end of the last one), not the audio decoded or sent to
    ASR: with translation a caption appears only once translated, and a bar that ran ahead would
    promise what is not there. Speed and ETA come from that position over the time elapsed; before
    the first caption there is no measured speed, so no ETA is guessed."""

    def __init__(self, console: Console, label: str, duration: float | None) -> None:
        self.console = console
        self.total = duration or None
        self.shown = 0.0  # stream seconds up to which captions have been shown
        self._started = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[done]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[eta]}"),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task(label, total=self.total, done="", speed="", eta="")

    def start(self) -> None:
        self._started = time.monotonic()
        self._progress.start()

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        self.console.print(caption_text(caption))
        self.shown = max(self.shown, min(caption.end, self.total or caption.end))
        self._update()

    def interim(self, event: InterimCaption) -> None:
        pass

    def error(self, message: str) -> None:
        self.console.print(Text(f"error: {message}", style="red"))

    def tick(self, stats: StatsSnapshot) -> None:
        self._update()

    def eta(self) -> float | None:
        """Seconds left at the speed measured so far; None before the first caption."""
        elapsed = time.monotonic() - self._started
        if not self.shown or not self.total or elapsed <= 0:
            return None
        return (self.total - self.shown) / (self.shown / elapsed)

    def _update(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-3)
        eta = self.eta()
        total = f"/{_clock(self.total)}" if self.total else ""
        self._progress.update(
            self._task,
            completed=self.shown,
            done=f"{_clock(self.shown)}{total}",
            speed=f"{self.shown / elapsed:.1f}x" if self.shown else "",
            eta="ETA –" if eta is None else f"ETA {_clock(eta)}",
        )

    def stop(self) -> None:
        self._progress.stop()
