"""Memory over a long live run: the live pipeline (VAD, interims, finals, the stats window,
the journal) on an hour of audio, fed as fast as it is taken instead of at 1x so that an hour takes
minutes. Prints RSS every `--every` minutes of audio and the change from the first sample.

    .venv/bin/python scripts/soak_rss.py [--minutes 60] [--every 5] [--model tiny.en]

The mix is built from ../shared/audio (livecap.bench.mix), written once, and replayed as one
file; captions go to a journal on disk and are not kept in memory (as `livecap mic` does)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import manifest  # noqa: E402
from livecap.bench.mix import build_mix  # noqa: E402
from livecap.config import resolve  # noqa: E402
from livecap.engine import Engine  # noqa: E402
from livecap.messages import Caption  # noqa: E402
from livecap.output.writers import Journal  # noqa: E402
from livecap.pipeline.runner import NoDisplay, run_stream  # noqa: E402
from livecap.pipeline.stream import Stream  # noqa: E402
from livecap.sources.file import FileSource  # noqa: E402


class Sampler(NoDisplay):
    """Counts finals and samples RSS every `every_s` seconds of audio (on run_stream's ticks)."""

    def __init__(self, stream: Stream, process: psutil.Process, every_s: float) -> None:
        self.stream, self.process, self.every_s = stream, process, every_s
        self.samples: list[tuple[float, float]] = []
        self.finals = 0
        self.next_mark = 0.0

    def final(self, caption: Caption, latency: dict[str, float]) -> None:
        self.finals += 1

    def tick(self, stats: object) -> None:
        if self.stream.position >= self.next_mark:
            self.sample()
            print(
                f"{self.samples[-1][0]:6.1f} min of audio  RSS {self.samples[-1][1]:7.1f} MB  "
                f"finals {self.finals}",
                flush=True,
            )
            self.next_mark += self.every_s

    def sample(self) -> None:
        self.samples.append((self.stream.position / 60, self.process.memory_info().rss / 2**20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--model", default="tiny.en")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mix = Path(tmp) / "mix.wav"
        clips = [
            (c.path, c.reference) for c in manifest() if c.language == "en" and c.path.is_file()
        ]
        build_mix(clips, mix, minutes=args.minutes)
        config = resolve(None, {"model": args.model}).config
        with Engine(config) as engine:
            stream = engine.stream(FileSource(mix, realtime=False), live=True)
            sampler = Sampler(stream, psutil.Process(), args.every * 60)
            started = time.monotonic()
            run_stream(stream, sampler, Journal(Path(tmp) / "soak.journal.jsonl"), keep=False)
            sampler.sample()
    samples, finals = sampler.samples, sampler.finals
    rss = np.array([r for _, r in samples[1:]])  # the first sample is before the first model run
    print(
        f"\n{args.minutes:g} min of audio in {time.monotonic() - started:.0f} s, {finals} finals; "
        "RSS after the first "
        f"{args.every:g} min {rss[0]:.1f} MB, at the end {rss[-1]:.1f} MB "
        f"({(rss[-1] / rss[0] - 1):+.1%}), "
        f"range {rss.min():.1f}-{rss.max():.1f} MB"
    )


if __name__ == "__main__":
    main()
