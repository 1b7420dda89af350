"""Opus against PCM on `/v1/stream`, on the same speech: a `livecap serve` process on loopback takes
each en_read clip (with 1 s of silence after it) once as 16 kHz s16le PCM and once as Ogg Opus made
by the encoder `livecap mic --publish` uses (livecap.sources.codecs.OggOpusEncoder, libopus), and
reports the bytes sent per second of audio and the WER over all clips for each.

    .venv/bin/python scripts/opus_vs_pcm.py                          # 32 kbit/s
    .venv/bin/python scripts/opus_vs_pcm.py --bitrates 16,24,32 -- --workers 1

Arguments after `--` go to `livecap serve`. The clips are sent at 2x real time (`--speed`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import numpy as np

from livecap.bench.streams import serve_process
from livecap.bench.wer import wer
from livecap.server.client import pcm_frames, stream_frames
from livecap.sources.codecs import OggOpusEncoder

AUDIO = Path(
    os.environ.get(
        "LIVECAP_SHARED_AUDIO", Path(__file__).resolve().parent.parent.parent / "shared" / "audio"
    )
)


def clips() -> list[tuple[Path, str]]:
    rows = [
        line.split("\t")
        for line in (AUDIO / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    ]
    return [(AUDIO / r[0], r[-1]) for r in rows if r[0].startswith("en_read/")]


def opus_pages(frames: list[bytes], bitrate: int) -> list[bytes]:
    """The PCM frames as Ogg Opus, one piece per frame (as a
    live publisher sends it) and the tail."""
    encoder = OggOpusEncoder(16_000, bitrate=bitrate)
    pieces = [encoder.encode(np.frombuffer(f, "<i2").astype(np.float32) / 32768) for f in frames]
    pieces.append(encoder.close())
    return [p for p in pieces if p]


async def measure(url: str, bitrates: list[int], speed: float) -> list[tuple[str, float, float]]:
    """(format, bytes per audio second, WER over all clips) for PCM and each Opus bitrate."""
    references, texts = (
        [],
        {name: [] for name in ["s16le", *(f"opus {b // 1000} kbit/s" for b in bitrates)]},
    )
    sent = dict.fromkeys(texts, 0)
    seconds = 0.0
    for path, reference in clips():
        frames = pcm_frames(path, silence_s=1.0)
        seconds += sum(len(f) for f in frames) / (2 * 16_000)
        references.append(reference)
        runs = [("s16le", frames, {})] + [
            (f"opus {b // 1000} kbit/s", opus_pages(frames, b), {"sample_format": "opus"})
            for b in bitrates
        ]
        for name, pieces, start in runs:
            result = await stream_frames(url, pieces, speed=speed, start=start)
            if result.close_code != 1000:
                raise SystemExit(
                    f"{path.name} as {name}: closed {result.close_code} {result.close_reason}"
                )
            sent[name] += sum(len(p) for p in pieces)
            texts[name].append(result.text)
    return [
        (name, sent[name] / seconds, wer(" ".join(references), " ".join(texts[name])))
        for name in texts
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bitrates", default="32", help="Opus bitrates in kbit/s, comma separated")
    parser.add_argument(
        "--speed", type=float, default=2.0, help="times real time the clips are sent at"
    )
    parser.add_argument("serve", nargs="*", help="arguments for `livecap serve` (after --)")
    args = parser.parse_args()
    bitrates = [int(float(b) * 1000) for b in args.bitrates.split(",")]
    with serve_process(args.serve) as (base, _, _):
        rows = asyncio.run(
            measure(base.replace("http://", "ws://") + "/v1/stream", bitrates, args.speed)
        )
    pcm = rows[0][1]
    print("| audio sent | bytes per audio second | of 16 kHz PCM | WER |")
    print("|---|---|---|---|")
    for name, per_second, error in rows:
        print(f"| {name} | {per_second:,.0f} | {per_second / pcm:.1%} | {error:.1%} |")


if __name__ == "__main__":
    main()
