"""Load time and memory of each offline model, and the process RSS over load/unload cycles through
the server's model registry (`livecap.engine.open_models`, as `livecap serve` uses it). Run it on
a quiet machine: the figures are of this process only, but load times are wall-clock.

    .venv/bin/python scripts/model_memory.py [--cycles 3] [--no-trim]

Each model is first measured alone in a fresh process, as the default model: RSS growth from
the start (faster-whisper imported) after the load, after transcribing one clip (CTranslate2
allocates its work buffers on the first call; the VAD loads then too), and after the unload.
Then one process keeps tiny.en (the default) and loads, uses and unloads `base` `--cycles` times
(TTL 0: unloaded when its lease ends), printing RSS at each step.
`--no-trim` leaves out `malloc_trim` to show what glibc keeps without it."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import manifest  # noqa: E402
from livecap.asr import registry as registry_module  # noqa: E402
from livecap.asr.registry import process_rss  # noqa: E402
from livecap.config import Config  # noqa: E402
from livecap.engine import open_models  # noqa: E402
from livecap.pipeline.runner import run_stream  # noqa: E402
from livecap.sources.file import FileSource  # noqa: E402

MIB = 1024 * 1024


def clip() -> Path:
    """A German clip (base detects its language) from the shared recordings."""
    return next(c.path for c in manifest() if c.language == "de" and c.path.is_file())


def transcribe(lease: registry_module.Lease) -> str:
    result = run_stream(lease.stream(FileSource(clip()), live=False))
    return " ".join(c.text for c in result.captions)


def wait_unloaded(models: registry_module.ModelRegistry, name: str) -> None:
    for _ in range(600):
        if all(r.state == "unloaded" for r in models.records() if r.name == name):
            return
        time.sleep(0.05)
    raise SystemExit(f"{name} was not unloaded")


def one(name: str) -> dict:
    """One model alone in this process, as a server's default: load time and RSS at each step."""
    import faster_whisper  # noqa: F401 - imported before the baseline, as a server has it

    figures = {"model": name, "rss_start": process_rss()}
    started = time.monotonic()
    models = open_models(replace(Config(), asr=replace(Config().asr, model=name)))
    figures["load_s"] = round(time.monotonic() - started, 3)
    figures["rss_loaded"] = process_rss()
    with models.acquire(name) as lease:
        figures["text"] = transcribe(lease)
    figures["rss_used"] = process_rss()
    models.close()  # unloads it, as an idle model's TTL does
    figures["rss_unloaded"] = process_rss()
    return figures


def cycles(count: int) -> list[tuple[str, int]]:
    models = open_models(Config(), ttl_s=0, max_models=1)
    marks = [("tiny.en loaded", process_rss())]
    for cycle in range(1, count + 1):
        lease = models.acquire("base")
        marks.append((f"cycle {cycle}: base loaded", process_rss()))
        transcribe(lease)
        marks.append((f"cycle {cycle}: base used", process_rss()))
        lease.release()
        wait_unloaded(models, "base")
        marks.append((f"cycle {cycle}: base unloaded", process_rss()))
    models.close()
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--no-trim", action="store_true", help="unload without malloc_trim")
    # the child process of the per-model figures
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.no_trim:
        registry_module.trim_heap = lambda: None
    if args.one:
        print(json.dumps(one(args.one)))
        return
    print("| model | load | RSS growth: load | after one clip | after unload |")
    print("|---|---|---|---|---|")
    for name in ("tiny.en", "base"):
        command = [sys.executable, __file__, "--one", name] + (
            ["--no-trim"] if args.no_trim else []
        )
        f = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        grown = [
            f"{(f[key] - f['rss_start']) / MIB:+.0f} MiB"
            for key in ("rss_loaded", "rss_used", "rss_unloaded")
        ]
        print(f"| {name} | {f['load_s']:.2f} s | " + " | ".join(grown) + " |")
    print()
    for label, rss in cycles(args.cycles):
        print(f"{label:28} RSS {rss / MIB:7.1f} MiB")


if __name__ == "__main__":
    main()
