"""CPU seconds of one final by its length, on a live final's encoder input (`FINAL_INPUT`: the
audio and at least 8 s of silence) and on Whisper's fixed 30 s (a file's).

    .venv/bin/python scripts/final_cost.py [AUDIO] [--model tiny.en] [--seconds 2,4,7,10,14]

Each length is cut from AUDIO (default: the bundled sample) at three offsets, decoded as a final
with word timestamps on one thread after a warm-up, and the median process CPU is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livecap.asr.base import AsrRequest  # noqa: E402
from livecap.asr.whisper import WhisperBackend  # noqa: E402
from livecap.config import AsrConfig  # noqa: E402
from livecap.messages import SAMPLE_RATE  # noqa: E402
from livecap.sources.file import decode_blocks  # noqa: E402


def cpu_of(backend: WhisperBackend, samples: np.ndarray, live: bool) -> float:
    request = AsrRequest(samples, final=True, word_timestamps=True, live=live)
    backend.transcribe(request)  # warm-up
    start = time.process_time()
    backend.transcribe(request)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", type=Path, nargs="?", default=ROOT / "livecap/data/sample.flac")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--seconds", default="2,4,7,10,14")
    args = parser.parse_args()
    audio = np.concatenate(list(decode_blocks(args.audio)))
    backend = WhisperBackend(AsrConfig(model=args.model, workers=1, cpu_threads=1))
    inputs = {"short inputs": True, "30 s inputs": False}  # live or not
    for seconds in (float(s) for s in args.seconds.split(",")):
        length = int(seconds * SAMPLE_RATE)
        room = max(0, len(audio) - length)
        cuts = [audio[o : o + length] for o in (0, room // 2, room)]
        figures = []
        for name, live in inputs.items():
            cpu = np.median([cpu_of(backend, cut, live) for cut in cuts])
            figures.append(f"{name} {cpu:.3f} s")
        print(f"{seconds:g} s final: " + ", ".join(figures), flush=True)


if __name__ == "__main__":
    main()
