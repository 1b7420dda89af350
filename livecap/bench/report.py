"""Figures, tables, JSON and plots for `livecap bench` (the
keys are listed in livecap.bench.plan)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from livecap.bench.wer import normalize
from livecap.config import Config
from livecap.errors import LivecapError
from livecap.pipeline.stats import percentile

PLOT_HINT = "--plot needs matplotlib: pip install 'livecap[plot]'"


def progress() -> Progress:
    """The bar shown while the bench runs (on stderr, so stdout keeps only the tables)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    )


# -- figures ------------------------------------------------------------------------------------


def corpus_wer(files: list[dict[str, Any]]) -> tuple[float | None, int | None]:
    """WER and inserted words over all files with a reference, after livecap.wer.normalize."""
    import jiwer

    pairs = [(normalize(f["reference"]), normalize(f["text"])) for f in files if f.get("reference")]
    pairs = [(ref, hyp) for ref, hyp in pairs if ref]
    if not pairs:
        return None, None
    words = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    return float(words.wer), int(words.insertions)


def wer_by_language(files: list[dict[str, Any]], prefix: str) -> dict[str, float | None]:
    """WER pooled over the files of each known language (a mean of per-file WERs would weigh a
    three-word clip like a long one): `<prefix><lang>`."""
    languages = sorted({f["language"] for f in files if f.get("language")})
    return {
        f"{prefix}{lang}": corpus_wer([f for f in files if f.get("language") == lang])[0]
        for lang in languages
    }


def _share(seconds: float | None, audio: float) -> float | None:
    return seconds / audio if seconds is not None and audio else None


def _total(files: list[dict[str, Any]], key: str) -> float | None:
    values = [f[key] for f in files]
    return None if any(v is None for v in values) else sum(values)


def figures(raw: dict[str, Any]) -> dict[str, float | None]:
    """The flat figures of one run (livecap, live mode and baseline)."""
    ours = raw["livecap"]
    files = ours["files"]
    audio = sum(f["audio_s"] for f in files)
    wall = sum(f["wall_s"] for f in files)
    out: dict[str, float | None] = {
        "load_s": ours["load_s"],
        "first_caption_s": files[0]["first_caption_s"],
        "audio_s": audio,
        "wall_s": wall,
        "rtf": _share(wall, audio),
    }
    for stage in ("decode", "vad", "asr", "translate"):
        out[f"{stage}_s"] = _total(files, f"{stage}_s")
        out[f"rtf_{stage}"] = _share(out[f"{stage}_s"], audio)
    out["wer"], out["insertions"] = corpus_wer(files)
    out.update(wer_by_language(files, "wer_"))
    out["nonspeech_words"] = len(normalize(ours["nonspeech_text"]).split())
    out["peak_rss_mb"] = ours["peak_rss_mb"]
    out.update(_live_figures(ours["live"]))
    theirs = raw.get("baseline")
    if theirs is not None:
        wall = sum(f["wall_s"] for f in theirs["files"])
        out["baseline_load_s"] = theirs["load_s"]
        out["baseline_wall_s"] = wall
        out["baseline_rtf"] = _share(wall, audio)
        out["baseline_wer"], out["baseline_insertions"] = corpus_wer(theirs["files"])
        out.update(wer_by_language(theirs["files"], "baseline_wer_"))
        novad = [{**f, "text": f["text_novad"]} for f in theirs["files"]]
        out["baseline_novad_wer"], _ = corpus_wer(novad)
        out["baseline_novad_rtf"] = _share(sum(f["wall_novad_s"] for f in theirs["files"]), audio)
        out.update(_word_latency(ours["live"], theirs["files"]))
        out["baseline_nonspeech_words"] = len(normalize(theirs["nonspeech_text"]).split())
        out["baseline_peak_rss_mb"] = theirs["peak_rss_mb"]
    return out


def _live_figures(live: dict[str, Any] | None) -> dict[str, float | None]:
    if live is None:
        return {}
    out: dict[str, float | None] = {"live_audio_s": live["audio_s"]}
    for key in ("latency", "eos_wait", "processing"):
        values = [entry[key] for entry in live["latencies"]]
        name = "final" if key == "latency" else key
        out[f"{name}_p50"] = percentile(values, 50)
        out[f"{name}_p95"] = percentile(values, 95)
        out[f"{name}_max"] = max(values, default=None)
    out["interim_p50"] = percentile(live["interims"], 50)
    audio = live["audio_s"]
    out["live_rtf_final"] = _share(live["asr_s"], audio)
    out["live_rtf_interim"] = _share(live["interim_asr_s"], audio)
    out["live_rtf"] = _share(live["asr_s"] + live["interim_asr_s"] + live["translate_s"], audio)
    out["dropped_s"] = live["dropped_s"]
    out["max_pending_finals"] = live["max_pending_finals"]
    out["max_capture_s"] = live["max_capture_s"]
    out["max_behind_s"] = live["max_behind_s"]
    out["live_first_caption_s"] = live["first_caption_s"]
    return out


def _word_latency(
    live: dict[str, Any] | None, baseline_files: list[dict[str, Any]]
) -> dict[str, float | None]:
    """Word latency of the live replay against faster-whisper's
    word times (see livecap.bench.latency)."""
    from livecap.bench.latency import TimedWord, caption_lags, shown_words, word_latencies

    if live is None:
        return {}
    reference = {f["path"]: [TimedWord(*w) for w in f["words"]] for f in baseline_files}
    committed: list[float] = []
    final: list[float] = []
    lags = [lag for f in live["files"] for lag in caption_lags(f["events"])]
    for f in live["files"]:
        words = reference.get(f["path"], [])
        if not f["whole"]:  # replay cut at the limit: only the words spoken before it count
            words = [w for w in words if w.end <= f["audio_s"]]
        found = word_latencies(words, shown_words(f["events"]))
        committed += found["committed"]
        final += found["final"]
    whole = [f for f in live["files"] if f["whole"]]
    return {
        "word_committed_p50": percentile(committed, 50),
        "word_committed_p95": percentile(committed, 95),
        "word_final_p50": percentile(final, 50),
        "word_final_p95": percentile(final, 95),
        "caption_lag_p50": percentile(lags, 50),
        "caption_lag_p95": percentile(lags, 95),
        "live_wer": corpus_wer(whole)[0] if whole else None,
    }


def spread(values: list[float | None]) -> dict[str, float] | None:
    """Median and min-max of one figure over repeats."""
    clean = [v for v in values if v is not None]
    if not clean:
        return None
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean)}


def configuration(label: str, config: Config, raws: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's record: settings, raw runs,
    summary over repeats, ratios to the baseline."""
    per_run = [figures(raw) for raw in raws]
    keys = dict.fromkeys(key for run in per_run for key in run)
    summary = {key: spread([run.get(key) for run in per_run]) for key in keys}

    def ratio(ours: str, theirs: str) -> float | None:
        a, b = summary.get(ours), summary.get(theirs)
        return a["median"] / b["median"] if a and b and b["median"] else None

    asr = config.asr
    return {
        "label": label,
        "settings": {
            "model": asr.model,
            "device": asr.device,
            "compute_type": asr.compute_type,
            "workers": asr.workers,
            "beam_size": asr.beam_size,
            "cpu_threads": asr.cpu_threads,
            "language": asr.language,
            "translate_to": config.translate.translate_to,
            "compute_type_used": raws[0]["livecap"]["compute_type"],
        },
        "runs": raws,
        "summary": summary,
        "ratio": {
            "wall_s": ratio("wall_s", "baseline_wall_s"),
            "wer": ratio("wer", "baseline_wer"),
        },
    }


# -- terminal -----------------------------------------------------------------------------------

# Rows of the three tables: (figure with its unit, summary key, format, as percent). A row per
# configuration would not fit 80 columns; a column per configuration does, and wide runs are split.
OFFLINE_ROWS = (
    ("model load (s)", "load_s", "{:.2f}", False),
    ("first caption (s)", "first_caption_s", "{:.2f}", False),
    ("wall time (s)", "wall_s", "{:.2f}", False),
    ("RTF, whole pipeline", "rtf", "{:.3f}", False),
    ("RTF, decoding", "rtf_decode", "{:.3f}", False),
    ("RTF, VAD", "rtf_vad", "{:.3f}", False),
    ("RTF, ASR (busy, summed)", "rtf_asr", "{:.3f}", False),
    ("RTF, translation", "rtf_translate", "{:.3f}", False),
    ("WER, all (%)", "wer", "{:.1f}", True),
    ("peak RSS (MB)", "peak_rss_mb", "{:.0f}", False),
    ("non-speech words", "nonspeech_words", "{:.0f}", False),
)
BASELINE_ROWS = (
    ("model load (s)", "baseline_load_s", "{:.2f}", False),
    ("wall time (s)", "baseline_wall_s", "{:.2f}", False),
    ("RTF", "baseline_rtf", "{:.3f}", False),
    ("WER, all (%)", "baseline_wer", "{:.1f}", True),
    ("RTF, without VAD", "baseline_novad_rtf", "{:.3f}", False),
    ("WER, all, without VAD (%)", "baseline_novad_wer", "{:.1f}", True),
    ("peak RSS (MB)", "baseline_peak_rss_mb", "{:.0f}", False),
    ("non-speech words", "baseline_nonspeech_words", "{:.0f}", False),
)
LIVE_ROWS = (
    ("audio replayed (s)", "live_audio_s", "{:.0f}", False),
    ("final latency p50 (s)", "final_p50", "{:.2f}", False),
    ("final latency p95 (s)", "final_p95", "{:.2f}", False),
    ("final latency max (s)", "final_max", "{:.2f}", False),
    ("  end-of-speech wait p50 (s)", "eos_wait_p50", "{:.2f}", False),
    ("  processing p50 (s)", "processing_p50", "{:.2f}", False),
    ("  processing p95 (s)", "processing_p95", "{:.2f}", False),
    ("interim latency p50 (s)", "interim_p50", "{:.2f}", False),
    ("word latency, committed p50 (s)", "word_committed_p50", "{:.2f}", False),
    ("word latency, committed p95 (s)", "word_committed_p95", "{:.2f}", False),
    ("word latency, final p50 (s)", "word_final_p50", "{:.2f}", False),
    ("word latency, final p95 (s)", "word_final_p95", "{:.2f}", False),
    ("caption after its last word p50 (s)", "caption_lag_p50", "{:.2f}", False),
    ("caption after its last word p95 (s)", "caption_lag_p95", "{:.2f}", False),
    ("WER, live (%)", "live_wer", "{:.1f}", True),
    ("RTF, live (all compute)", "live_rtf", "{:.3f}", False),
    ("  finals", "live_rtf_final", "{:.3f}", False),
    ("  interims", "live_rtf_interim", "{:.3f}", False),
    ("dropped audio (s)", "dropped_s", "{:.1f}", False),
    ("most finals queued", "max_pending_finals", "{:.0f}", False),
    ("most behind (s)", "max_behind_s", "{:.1f}", False),
)


def cell(summary: dict[str, Any], key: str, fmt: str = "{:.2f}", percent: bool = False) -> str:
    """A figure's median, with its min-max beneath when repeats differ."""
    figure = summary.get(key)
    if figure is None:
        return "–"
    scale = 100 if percent else 1
    text = fmt.format(figure["median"] * scale)
    if figure["min"] != figure["max"]:
        text += f"\n{fmt.format(figure['min'] * scale)}–{fmt.format(figure['max'] * scale)}"
    return text


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _language_rows(
    configs: list[dict[str, Any]], prefix: str
) -> tuple[tuple[str, str, str, bool], ...]:
    """A WER row per language found in the summaries (only when there is more than one)."""
    keys = sorted({k for c in configs for k in c["summary"] if k.startswith(prefix)})
    if len(keys) < 2:
        return ()
    return tuple((f"WER, {k[len(prefix):]} (%)", k, "{:.1f}", True) for k in keys)


def _tables(
    title: str, configs: list[dict[str, Any]], rows: list[tuple[str, list[str]]], width: int
) -> list[Table]:
    """One table (more when the configurations do not fit `width`): a row per figure, a column per
    configuration; numbers never wrap or get cut, labels may wrap."""
    name_width = max(len(name) for name, _ in rows)
    widths = [
        max(len(line) for _, cells in rows for line in cells[i].split("\n"))
        for i in range(len(configs))
    ]
    groups: list[list[int]] = [[]]
    used = name_width + 4  # borders and padding
    for i, cell_width in enumerate(widths):
        need = max(cell_width, 8) + 3
        if groups[-1] and used + need > width:
            groups.append([])
            used = name_width + 4
        groups[-1].append(i)
        used += need
    tables = []
    for group in groups:
        table = Table(title=title, title_justify="left")
        table.add_column("figure", no_wrap=True)
        for i in group:
            table.add_column(
                configs[i]["label"],
                justify="right",
                no_wrap=False,
                min_width=max(widths[i], 8),
                overflow="fold",
            )
        for name, cells in rows:
            table.add_row(name, *(cells[i] for i in group))
        tables.append(table)
    return tables


def common_settings(document: dict[str, Any]) -> str:
    """The settings every configuration shares, for the line above the tables."""
    settings = [c["settings"] for c in document["configurations"]]
    shared = {
        k: v
        for k, v in settings[0].items()
        if all(s[k] == v for s in settings) and v not in (None, 0)
    }
    if "compute_type_used" in shared:
        shared["compute_type"] = shared.pop("compute_type_used")
    return ", ".join(f"{key} {value}" for key, value in shared.items())


def input_languages(document: dict[str, Any]) -> dict[str, int]:
    """Inputs per spoken language, where known (manifest, or --language)."""
    fallback = (
        document["configurations"][0]["settings"].get("language")
        if document["configurations"]
        else None
    )
    languages: dict[str, int] = {}
    for item in document["inputs"]:
        language = item.get("language") or fallback
        if language:
            languages[language] = languages.get(language, 0) + 1
    return languages


def warnings(document: dict[str, Any]) -> list[str]:
    """What makes a figure misleading: an English-only model scored on other languages."""
    other = {lang: n for lang, n in input_languages(document).items() if lang != "en"}
    if not other:
        return []
    named = ", ".join(f"{n} {lang}" for lang, n in sorted(other.items()))
    return [
        f"warning: {c['settings']['model']} is English-only, but {named} input(s) are not English: "
        "its WER on them measures the wrong model"
        for c in document["configurations"]
        if str(c["settings"]["model"]).endswith(".en")
    ]


def show(document: dict[str, Any], console: Console | None = None) -> None:
    """Three tables: offline, plain faster-whisper on the
    same audio, live; a column per configuration."""
    console = console or Console()
    configs = document["configurations"]
    audio = sum(i["duration_s"] for i in document["inputs"])
    console.print(
        f"{len(document['inputs'])} file(s), {audio:.1f} s of audio; {common_settings(document)}; "
        f"{document['repeat']} run(s) each",
        highlight=False,
    )
    for line in warnings(document):
        console.print(f"[bold yellow]{line}[/]", highlight=False)

    def rows(spec: tuple[tuple[str, str, str, bool], ...]) -> list[tuple[str, list[str]]]:
        return [
            (name, [cell(c["summary"], key, fmt, percent) for c in configs])
            for name, key, fmt, percent in spec
        ]

    offline = rows(OFFLINE_ROWS + _language_rows(configs, "wer_"))
    versus = rows(BASELINE_ROWS + _language_rows(configs, "baseline_wer_"))
    versus += [("wall time, livecap / fw", [_ratio(c["ratio"]["wall_s"]) for c in configs]),
               ("WER, livecap / fw", [_ratio(c["ratio"]["wer"]) for c in configs])]
    live = rows(LIVE_ROWS)
    sections = [
        ("offline (file mode)", offline, "wall_s"),
        (
            "plain faster-whisper (vad_filter=True, same model, threads, beam)",
            versus,
            "baseline_wall_s",
        ),
        ("live (1x replay): final latency = end-of-speech wait + processing", live, "live_audio_s"),
    ]
    for title, table_rows, needed in sections:
        if any(c["summary"].get(needed) for c in configs):
            for table in _tables(title, configs, table_rows, console.width):
                console.print(table)
    console.print(
        "[dim]RTF = seconds / audio seconds; the ASR RTF is busy time summed over workers. "
        "Non-speech words: "
        "words emitted on 12 s of silence and noise. fw: faster-whisper. Each run loads its model "
        "in a fresh "
        "process; figures are medians, with min–max beneath when runs differ.[/]"
    )


def show_streams(
    name: str, measured: dict[str, Any], seconds: float, console: Console | None = None
) -> None:
    """`--streams`: one row per level of concurrent streams (livecap.bench.streams)."""
    from livecap.bench.streams import LATENCY_LIMIT_S, WORDS_LIMIT_S

    def figure(value: float | None, fmt: str = "{:.2f}") -> str:
        return "–" if value is None else fmt.format(value)

    table = Table(
        title=f"{name}: {seconds:g} s of speech per stream at 1x (capacity: {measured['capacity']} "
        f"at p95 final <= {LATENCY_LIMIT_S:g} s, committed words <= {WORDS_LIMIT_S:g} s)"
    )
    table.caption = (
        "N: clients; final latency p50/p95 (s), and the worst stream's own p95; committed-word "
        "latency "
        "p50/p95 (s); est: the server's admission estimate; waited: clients that waited in line "
        "(longest "
        "wait, s); drop: audio the server dropped (s); compute: ASR worker-seconds and translation "
        "per "
        "audio second; cores: server CPU"
    )
    for column in (
        "N", "p50", "p95", "worst p95", "words p50", "words p95", "finals", "est", "waited", "drop",
        "refused", "WER", "compute", "cores",
    ):
        table.add_column(column, justify="right")
    for level in measured["levels"]:
        table.add_row(
            str(level["streams"]),
            figure(level["final_p50"]),
            figure(level["final_p95"]),
            figure(level["worst_stream_p95"]),
            figure(level.get("committed_p50")),
            figure(level.get("committed_p95")),
            str(level["finals"]),
            str(level.get("estimate", "–")),
            f"{level.get('waited', 0)} ({level.get('wait_max_s', 0.0):.0f})",
            f"{level['dropped_s']:.1f}",
            str(level["refused"]),
            figure(level["wer"], "{:.1%}"),
            figure(level["compute_per_audio_s"], "{:.3f}"),
            f"{level['server_cores']:.2f}",
        )
    out = console or Console()
    out.print(table)
    r = measured["reactions"]
    out.print(
        f"a DELETEd session's quiet publisher closed after {r['delete_publisher_s']:.2f} s; an "
        "abandoned "
        f"upload freed its slot after {r['upload_stop_s']:.2f} s ({r['upload_busy_after_s']:.1f} "
        f"ASR worker-seconds in {r['upload_calls_after']} calls after the client left)",
        soft_wrap=True,
    )


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write the bench document; an unwritable path is a LivecapError."""
    try:
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as error:
        raise LivecapError(f"{path}: cannot write ({error.strerror or error})") from None


# -- plot ---------------------------------------------------------------------------------------


def check_plot(path: Path) -> None:
    """Fail before measuring: matplotlib missing, or not a .png target."""
    if path.suffix.lower() != ".png":
        raise LivecapError(f"--plot {path}: give a .png file name")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise LivecapError(PLOT_HINT) from None


def plot_title(document: dict[str, Any]) -> str:
    """What was measured, where: the inputs, the machine and each configuration's WER."""
    inputs = document["inputs"]
    audio = sum(i["duration_s"] for i in inputs)
    named = Path(inputs[0]["path"]).name if len(inputs) == 1 else f"{len(inputs)} files"
    machine = document.get("machine", {})
    where = f"{machine.get('processor') or 'unknown CPU'}, {machine.get('cpus') or '?'} cores"
    wers = "; ".join(
        f"{c['label']} WER {cell(c['summary'], 'wer', '{:.1f}', percent=True).split(chr(10))[0]}%"
        for c in document["configurations"] if c["summary"].get("wer")
    )
    return f"{named} ({audio:.0f} s) on {where}" + (f"\n{wers}" if wers else "")


def draw(document: dict[str, Any], path: Path) -> None:
    """Left: every final caption's latency per configuration (live), with a box once there are
    enough to summarise. Right: RTF against the baseline. Titled with the inputs, machine and
    WER."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    configs = document["configurations"]
    labels = [c["label"] for c in configs]
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(12, 2.5 + 0.6 * len(configs) + 2), constrained_layout=True
    )
    figure.suptitle(plot_title(document))
    latencies = [
        [
            entry["latency"]
            for run in c["runs"]
            for entry in (run["livecap"]["live"] or {}).get("latencies", [])
        ]
        for c in configs
    ]
    if any(latencies):
        boxed = [values if len(values) >= 5 else [float("nan")] for values in latencies]
        left.boxplot(
            boxed, orientation="horizontal", tick_labels=labels, whis=(5, 95), showfliers=False
        )
        jitter = np.random.default_rng(0)
        for row, values in enumerate(latencies, start=1):
            left.scatter(
                values,
                row + jitter.uniform(-0.15, 0.15, len(values)),
                s=18,
                alpha=0.7,
                color="tab:blue",
            )
            if values:
                left.plot(
                    [np.median(values)] * 2, [row - 0.3, row + 0.3], color="tab:orange", linewidth=2
                )
        left.set_yticks(range(1, len(labels) + 1), labels)
        left.set_xlabel(
            "final-caption latency (s): dots captions, line median; box p25–p75, whiskers p5–p95"
        )
        left.set_xlim(left=0)
    else:
        left.text(0.5, 0.5, "live mode not run", ha="center", va="center", transform=left.transAxes)
        left.set_yticks([])
    left.invert_yaxis()
    left.set_title("live latency")
    rows = range(len(configs))
    height = 0.38
    for offset, key, name in (
        (-height / 2, "rtf", "livecap"),
        (height / 2, "baseline_rtf", "faster-whisper"),
    ):
        stats = [c["summary"].get(key) for c in configs]
        if not any(stats):
            continue
        medians = [s["median"] if s else 0.0 for s in stats]
        below = [s["median"] - s["min"] if s else 0 for s in stats]
        above = [s["max"] - s["median"] if s else 0 for s in stats]
        right.barh([r + offset for r in rows], medians, height, xerr=[below, above], label=name)
    right.set_yticks(list(rows), labels)
    right.invert_yaxis()
    right.set_xlabel("RTF offline (wall time / audio time; lower is faster)")
    right.set_title("offline RTF")
    right.legend(loc="best", fontsize="small")
    try:
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise LivecapError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        plt.close(figure)


def show_speakers(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """`--speakers`: diarization error and labelling CPU per
    conversation (livecap.bench.speakers)."""

    def figure(row: dict[str, Any], key: str, fmt: str) -> str:
        return "–" if row.get(key) is None else fmt.format(row[key])

    table = Table(
        title="speaker labels on conversations of different readers "
        "(DER: pyannote.metrics, 0.25 s collar)"
    )
    table.caption = ("file: one pass over the whole file; live: 1x replay, labels after revisions; "
                     "CPU: labelling CPU seconds per audio second")
    for column in (
        "conversation", "audio s", "speakers", "file DER", "found", "CPU", "live DER", "found",
        "CPU", "live RTF",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["conversation"],
            f"{row['audio_s']:.1f}",
            str(row["speakers"]),
            figure(row, "file_der", "{:.1%}"),
            str(row["file_found"]),
            figure(row, "file_cpu_per_audio_s", "{:.3f}"),
            figure(row, "live_der", "{:.1%}"),
            figure(row, "live_found", "{}"),
            figure(row, "live_cpu_per_audio_s", "{:.3f}"),
            figure(row, "live_rtf", "{:.2f}"),
        )
    (console or Console()).print(table)
