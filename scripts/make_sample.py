"""Make the bundled speech sample: espeak-ng reads a few sentences with pauses between them.

    python scripts/make_sample.py            # writes livecap/data/sample.flac and sample.flac.txt

The result is 16 kHz mono FLAC (what the pipeline works on), with its reference text beside it.
Needs espeak-ng (Debian package `espeak-ng`) and PyAV (installed with faster-whisper).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

SENTENCES = (
    "Welcome to this short demonstration of live captions.",
    "Every sentence you hear is turned into text on the screen.",
    "Captions appear a moment after each sentence is finished.",
    "Thank you for listening, and have a wonderful day.",
)
PAUSE_S = 1.0
RATE = 16_000
OUT = Path(__file__).resolve().parent.parent / "livecap" / "data" / "sample.flac"


def speak(text: str, wav: Path) -> np.ndarray:
    """One sentence as 16 kHz mono int16 samples."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(wav)) as container:
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    frames += resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


def write_flac(samples: np.ndarray, path: Path) -> None:
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install espeak-ng)")
    pause = np.zeros(int(PAUSE_S * RATE), dtype=np.int16)
    parts = [pause[: RATE // 2]]
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(SENTENCES):
            parts += [speak(sentence, Path(tmp) / f"{i}.wav"), pause]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_flac(np.concatenate(parts), OUT)
    OUT.with_name(OUT.name + ".txt").write_text(" ".join(SENTENCES) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB, {sum(map(len, parts)) / RATE:.1f} s)")


if __name__ == "__main__":
    main()
