"""Issue 12's table: `livecap file` with batched ASR against faster-whisper, sequential (with and
without its VAD) and batched (BatchedInferencePipeline), side by side in one run.

    .venv/bin/python scripts/batch_bench.py [--minutes 7] [--model tiny.en] [--beam 1] [--reps 2]
        [--combos 2x1x1,1x2x1,1x2x4,2x1x4,1x2x8] [--words] [--detect] [--out DIR]

Inputs: a long degraded mix built from ../shared/audio (livecap.bench.mix; WER against
its speech sections' references, joined; `--minutes 0`: none) and the long/ readings the model
can transcribe (the Spanish one needs a multilingual model). Every system is told the language,
unless `--detect`. Every system runs as its own process, so wall time is the
whole process (imports, model load, decoding, VAD); CPU is the child's user + system time. Each
livecap combination is workers x CPU threads per worker x batch size; faster-whisper gets all the
cores. Runs alternate between systems, `--reps` times; the table gives the median wall.
Speeds are only comparable within one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import manifest  # noqa: E402
from livecap.asr.models import resolve_model  # noqa: E402
from livecap.bench.mix import build_mix, load_sections  # noqa: E402
from livecap.bench.wer import wer  # noqa: E402

FW_SYSTEMS = {
    "fw-seq-vad": "faster-whisper sequential, vad_filter=True",
    "fw-seq": "faster-whisper sequential, no VAD",
    "fw-batched-4": "faster-whisper BatchedInferencePipeline, batch 4",
    "fw-batched-8": "faster-whisper BatchedInferencePipeline, batch 8",
}


def faster_whisper(
    system: str, path: Path, model: str, beam: int, threads: int, words: bool, language: str | None
) -> str:
    """One faster-whisper run (in this process, which the parent times); returns the text."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    fw = WhisperModel(resolve_model(model), device="cpu", compute_type="int8", cpu_threads=threads)
    common = {"beam_size": beam, "language": language, "word_timestamps": words}
    if system.startswith("fw-batched-"):
        pipeline = BatchedInferencePipeline(fw)
        segments, _ = pipeline.transcribe(
            str(path), batch_size=int(system.rsplit("-", 1)[1]), **common
        )
    else:
        segments, _ = fw.transcribe(str(path), vad_filter=system == "fw-seq-vad", **common)
    return " ".join(s.text.strip() for s in segments)


def timed(command: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run a process; its stdout, wall seconds and CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {run.returncode}: {run.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return run.stdout, wall, cpu


def run_system(
    system: str, path: Path, args: argparse.Namespace, language: str | None
) -> tuple[str, float, float]:
    if system in FW_SYSTEMS:
        command = [
            sys.executable, __file__, "--fw", system, "--input", str(path), "--model", args.model,
            "--beam", str(args.beam), "--threads", str(args.threads),
        ] + (["--words"] if args.words else [])
        if language:
            command += ["--language", language]
        out, wall, cpu = timed(command, {})
        return json.loads(out)["text"], wall, cpu
    workers, threads, batch = (int(x) for x in system.split("x"))
    with tempfile.TemporaryDirectory() as out_dir:
        command = [
            sys.executable, "-m", "livecap", "file", str(path), "--jsonl", "-o", out_dir, "-f",
            "txt", "--model", args.model, "--beam-size", str(args.beam),
            "--word-timestamps" if args.words else "--no-word-timestamps",
        ]
        if language:
            command += ["--language", language]
        env = {
            "LIVECAP_WORKERS": str(workers),
            "LIVECAP_CPU_THREADS": str(threads),
            "LIVECAP_BATCH_SIZE": str(batch),
            "HF_HUB_OFFLINE": "1",
        }
        out, wall, cpu = timed(command, env)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return " ".join(e["text"] for e in events if e["type"] == "final"), wall, cpu


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="faster-whisper's CPU threads"
    )
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--combos",
        default="2x1x1,1x2x1,1x2x4,2x1x4,1x2x8",
        help="livecap runs: workers x threads x batch, comma-separated",
    )
    parser.add_argument(
        "--systems", default=",".join(FW_SYSTEMS), help="faster-whisper runs, comma-separated"
    )
    parser.add_argument("--words", action="store_true", help="word timestamps in every system")
    parser.add_argument("--detect", action="store_true", help="no system is told the language")
    parser.add_argument("--out", type=Path, default=Path("/tmp/livecap-batch-bench"))
    parser.add_argument("--fw", help=argparse.SUPPRESS)  # internal: one faster-whisper run
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--language", help=argparse.SUPPRESS)
    return parser.parse_args()


def bench_inputs(args: argparse.Namespace) -> list[tuple[Path, str, str, float]]:
    """The mix (built once) and the long clips: path, reference, language, seconds."""
    inputs = []
    if args.minutes > 0:
        mix = args.out / f"mix-{args.minutes:g}min.wav"
        if not mix.is_file():
            english = [
                (c.path, c.reference) for c in manifest() if c.language == "en" and c.path.is_file()
            ]
            build_mix(english, mix, minutes=args.minutes)
        sections = load_sections(mix)
        reference = " ".join(s.reference for s in sections if s.kind == "speech" and s.reference)
        inputs.append((mix, reference, "en", sections[-1].end))
    multilingual = not args.model.endswith(".en")
    inputs += [
        (c.path, c.reference, c.language, c.duration)
        for c in manifest()
        if c.path.parent.name == "long"
        and c.path.is_file()
        and (multilingual or c.language == "en")
    ]
    return inputs


def print_report(args: argparse.Namespace, inputs: list, systems: list[str], results: dict) -> None:
    print(
        f"\nmodel {args.model}, beam {args.beam}, word timestamps {'on' if args.words else 'off'}, "
        f"language {'detected' if args.detect else 'given'}, {os.cpu_count()} cores, "
        f"{args.reps} runs each (median wall; shared machine: see the spread)\n"
    )
    for path, reference, language, seconds in inputs:
        baseline = None
        if "fw-seq-vad" in systems:
            baseline = statistics.median(w for _, w, _ in results[(path.name, "fw-seq-vad")])
        print(f"{path.name} ({seconds / 60:.1f} min, {language})\n")
        print("| system | wall s (median; all runs) | x fw sequential VAD | CPU s | WER |")
        print("|---|---|---|---|---|")
        for system in systems:
            runs = results[(path.name, system)]
            wall = statistics.median(w for _, w, _ in runs)
            livecap = "livecap file, {} workers x {} threads, batch {}"
            name = FW_SYSTEMS.get(system) or livecap.format(*system.split("x"))
            ratio = f"{wall / baseline:.2f}" if baseline else "–"
            spread = ", ".join(f"{w:.1f}" for _, w, _ in runs)
            print(
                f"| {name} | {wall:.1f} ({spread}) | {ratio} | "
                f"{statistics.median(c for _, _, c in runs):.1f} | "
                f"{wer(reference, runs[0][0]):.1%} |"
            )
        print()


def main() -> None:
    args = parse_args()
    if args.fw:
        text = faster_whisper(
            args.fw, args.input, args.model, args.beam, args.threads, args.words, args.language
        )
        print(json.dumps({"text": text}))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = bench_inputs(args)
    systems = [s for s in args.systems.split(",") if s] + [c for c in args.combos.split(",") if c]
    results: dict[tuple[str, str], list[tuple[str, float, float]]] = {}
    for rep in range(args.reps):
        for path, _, language, _ in inputs:
            for system in systems if rep % 2 == 0 else systems[::-1]:  # alternate: load drifts
                got = run_system(system, path, args, None if args.detect else language)
                results.setdefault((path.name, system), []).append(got)
                print(
                    f"rep {rep + 1} {path.name} {system}: wall {got[1]:.1f} s, cpu {got[2]:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    print_report(args, inputs, systems, results)


if __name__ == "__main__":
    main()
