"""Issue 9's table on a long mix built from ../shared/audio: live captions against offline
faster-whisper on the same audio, with word latency measured from livecap's own output.

    .venv/bin/python scripts/live_mix.py [--minutes 4]
    [--model tiny.en] [--out DIR] [-- extra livecap flags]

Rows: faster-whisper offline without VAD (beam 1, word timestamps: also the reference word times),
faster-whisper offline with `vad_filter=True`, `livecap file` offline, `livecap file --realtime`
(1x replay, takes the mix's length). Columns: WER against the clips' references; committed and
final word latency p50/p95 (spoken -> shown, see livecap.bench.latency); final latency after the end
of speech p50/p95 (the stream's own figure); a caption after its last word p50/p95; compute per
audio second (finals + interims + translation) and process CPU per audio second; words emitted
inside silence/noise/buzz sections; WER per degradation (clean, far, quiet, ...).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import manifest  # noqa: E402
from livecap.asr.models import resolve_model  # noqa: E402
from livecap.bench.latency import (  # noqa: E402
    TimedWord,
    caption_lags,
    faster_whisper_text,
    shown_words,
    word_latencies,
)
from livecap.bench.mix import READING_MIN_S, Section, build_mix, build_reading, load_sections  # noqa: E402
from livecap.bench.wer import wer  # noqa: E402


def pct(values: list[float]) -> str:
    return (
        "–" if not values else f"{np.percentile(values, 50):.2f} / {np.percentile(values, 95):.2f}"
    )


def reference_text(sections: list[Section]) -> str:
    return " ".join(s.reference for s in sections if s.kind == "speech" and s.reference)


def faster_whisper(path: Path, model: str, vad: bool) -> tuple[str, list[TimedWord], float]:
    from faster_whisper import WhisperModel

    fw = WhisperModel(resolve_model(model), device="cpu", compute_type="int8", cpu_threads=2)
    started = time.monotonic()
    text, words = faster_whisper_text(
        fw, path, word_timestamps=True, beam_size=1, vad_filter=vad, language="en"
    )
    return text, words, time.monotonic() - started


def livecap_run(path: Path, out: Path, realtime: bool, extra: list[str]) -> list[dict]:
    command = [
        sys.executable, "-m", "livecap", "file", str(path), "--jsonl", "--output-dir", str(out),
        *extra,
    ]
    if realtime:
        command.append("--realtime")
    print("$", " ".join(command), file=sys.stderr, flush=True)
    run = subprocess.run(
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if run.returncode not in (0, 1):
        raise SystemExit(f"livecap exited {run.returncode}: {run.stderr[-2000:]}")
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def words_within(finals: list[dict], spans: list[tuple[float, float]]) -> list[str]:
    """Words of the finals whose middle lies inside one of `spans` (start, end)."""
    return [
        w["word"] for f in finals for w in f.get("words", [])
        if any(a <= (w["start"] + w["end"]) / 2 <= b for a, b in spans)
    ]


def in_sections(finals: list[dict], sections: list[Section], kinds: tuple[str, ...]) -> list[str]:
    """Words of the finals inside a section of one of `kinds`."""
    return words_within(finals, [(s.start, s.end) for s in sections if s.kind in kinds])


def per_degradation(finals: list[dict], sections: list[Section]) -> dict[str, float]:
    out: dict[str, tuple[list[str], list[str]]] = {}
    for s in sections:
        if s.kind != "speech" or not s.reference:
            continue
        words = words_within(finals, [(s.start - 0.3, s.end + 0.3)])
        refs, hyps = out.setdefault(s.degradation or "clean", ([], []))
        refs.append(s.reference)
        hyps.append(" ".join(words))
    return {k: wer(" ".join(r), " ".join(h)) for k, (r, h) in out.items()}


def baseline_rows(
    mix: Path, model: str, truth: str, audio_s: float
) -> tuple[list[tuple], list[TimedWord]]:
    """faster-whisper alone on the mix, without and with its VAD; the run without gives the
    reference word times."""
    rows, ref_words = [], []
    baselines = (
        ("faster-whisper offline, no VAD, beam 1", False),
        ("faster-whisper offline, vad_filter=True", True),
    )
    for name, vad in baselines:
        text, words, wall = faster_whisper(mix, model, vad=vad)
        if not vad:
            ref_words = words
        offline = ("offline",) * 4
        rows.append((name, wer(truth, text), *offline, f"{wall / audio_s:.3f}", "", ""))
    return rows, ref_words


def livecap_row(
    name: str, events: list[dict], sections: list, truth: str, ref_words: list[TimedWord],
    realtime: bool,
) -> tuple:
    """One livecap run's row: WER, word and final latency (live only), compute, non-speech words."""
    audio_s = sections[-1].end
    finals = [e for e in events if e["type"] == "final"]
    stats = next((e for e in events if e["type"] == "stats"), {})
    hyp = " ".join(f["text"] for f in finals)
    nonspeech = in_sections(finals, sections, ("white_noise", "brown_noise", "buzz", "silence"))
    final_s = stats.get("asr_seconds", 0) / audio_s
    interim_s = stats.get("interim_asr_seconds", 0) / audio_s
    compute = (
        f"{stats.get('rtf') or 0:.3f} ({final_s:.3f} final + {interim_s:.3f} interim), "
        f"cpu {stats.get('cpu_per_audio_s') or 0:.3f}"
    )
    timing = ("offline",) * 4
    if realtime:
        latency = word_latencies(ref_words, shown_words(events))
        final_after = [f["latency"]["latency"] for f in finals if "latency" in f]
        timing = (
            pct(latency["committed"]), pct(latency["final"]), pct(final_after),
            pct(caption_lags(events)),
        )
    degradation = per_degradation(finals, sections)
    return (name, wer(truth, hyp), *timing, compute, len(nonspeech), degradation)


def print_table(rows: list[tuple]) -> None:
    print(
        "| system | WER | word committed after spoken p50 / p95 (s) | word final p50 / p95 (s) "
        "| final after end of speech p50 / p95 (s) | caption after its last word p50 / p95 (s) "
        "| compute per audio s | words on non-speech | WER per degradation |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, score, *rest in rows:
        degr = rest[-1]
        degr_text = (
            ", ".join(f"{k} {v:.1%}" for k, v in sorted(degr.items()))
            if isinstance(degr, dict)
            else ""
        )
        cells = " | ".join(str(x) for x in rest[:-1])
        print(f"| {name} | {score:.1%} | {cells} | {degr_text} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--out", type=Path, default=Path("/tmp/livecap-mix"))
    parser.add_argument("--no-live", action="store_true", help="skip the 1x replay")
    parser.add_argument(
        "--reading", action="store_true",
        help="a continuous reading instead: the long clips (40 s or more) clean, reverberant, "
        "quiet, phone",
    )
    parser.add_argument("extra", nargs="*", help="more livecap flags (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    mix = args.out / f"{'reading' if args.reading else 'mix'}-{args.minutes:g}min.wav"
    if not mix.is_file():
        clips = [
            (c.path, c.reference) for c in manifest()
            if c.language == "en"
            and c.path.is_file()
            and (not args.reading or c.duration >= READING_MIN_S)
        ]
        (build_reading if args.reading else build_mix)(clips, mix, minutes=args.minutes)
    sections = load_sections(mix)
    truth = reference_text(sections)
    audio_s = sections[-1].end
    flags = ["--model", args.model, *args.extra]
    rows, ref_words = baseline_rows(mix, args.model, truth, audio_s)
    runs = [("livecap file (offline)", False)]
    if not args.no_live:
        runs.append(("livecap file --realtime", True))
    for name, realtime in runs:
        folder = args.out / ("live" if realtime else "offline")
        events = livecap_run(mix, folder, realtime, flags)
        lines = "".join(json.dumps(e) + "\n" for e in events)
        (folder / "events.jsonl").write_text(lines, encoding="utf-8")
        if realtime:
            (folder / "reference_words.json").write_text(
                json.dumps([w.__dict__ for w in ref_words]), encoding="utf-8"
            )
        rows.append(livecap_row(name, events, sections, truth, ref_words, realtime))
    speech_clips = sum(1 for s in sections if s.kind == "speech")
    print(
        f"\nmix: {mix} ({audio_s / 60:.1f} min, {speech_clips} clips), "
        f"model {args.model}, flags {' '.join(flags)}\n"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
