"""A long, messy mix built from recordings with references, to measure live captioning as it is
really used: many speakers, loud then quiet, far (band-limited) and reverberant voices, noisy rooms,
pauses, and stretches of silence, noise and voice-like buzz where every word is invented.

The mix is one 16 kHz WAV plus a JSON sidecar listing each section (start, end, kind, the
degradation applied, the reference text). Degradations use sox; the order and choices are seeded.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE

# sox effects per degradation; "far" is the quiet band-limited voice the Silero state used to lose
DEGRADATIONS: dict[str, list[str]] = {
    "clean": [],
    "loud": ["gain", "-n", "-1"],
    "quiet": ["gain", "-20"],
    "far": ["gain", "-28", "highpass", "300", "lowpass", "3000"],
    "reverberant": ["reverb", "60", "50", "100", "100", "20", "-3"],
    "phone": ["highpass", "300", "lowpass", "3400", "gain", "-6"],
}
ROTATION = ("clean", "far", "loud", "quiet", "reverberant", "phone", "clean", "quiet")
# a long reading, as rooms and lines change it
READING_ROTATION = ("clean", "reverberant", "quiet", "phone")
READING_MIN_S = 40.0  # clips this long make a continuous reading (see `build_reading`)
NONSPEECH = ("silence", "white_noise", "brown_noise", "buzz")


@dataclass(frozen=True)
class Section:
    """A stretch of a built mix: what it holds and where it came from."""
    start: float
    end: float
    kind: str  # "speech", "pause" (a gap between clips) or a NONSPEECH kind
    source: str | None = None
    degradation: str | None = None
    reference: str | None = None


def _read(path: Path, effects: list[str]) -> np.ndarray:
    """Decode any file to 16 kHz mono float32, through sox effects."""
    from livecap.sources.file import decode_blocks

    audio = np.concatenate(list(decode_blocks(path)))
    if not effects:
        return audio
    if shutil.which("sox") is None:
        raise LivecapError("sox is needed to degrade mix audio (apt-get install sox)")
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        write_wav(raw, audio)
        subprocess.run(["sox", str(raw), str(out), *effects], check=True, capture_output=True)
        with wave.open(str(out)) as handle:
            frames = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16)
    return frames.astype(np.float32) / 32768.0


def nonspeech(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """`seconds` of a non-speech kind (silence, noise, buzz), from `rng`."""
    n = int(seconds * SAMPLE_RATE)
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    if kind == "white_noise":
        return (0.03 * rng.standard_normal(n)).astype(np.float32)
    if kind == "brown_noise":
        brown = np.cumsum(rng.standard_normal(n))
        brown -= np.linspace(brown[0], brown[-1], n)
        return (0.05 * brown / (np.std(brown) or 1.0)).astype(np.float32)
    # voice-like buzz: a 150 Hz harmonic tone, vibrato and a 4 Hz syllable-rate envelope
    t = np.arange(n) / SAMPLE_RATE
    f = 150 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    tone = np.sin(phase) + 0.7 * np.sin(2 * phase) + 0.5 * np.sin(3 * phase)
    return ((0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.15 * tone).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """16 kHz mono 16-bit WAV of float audio (the one writer the bench, scripts and tests use)."""
    return write_pcm_wav(path, (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())


def write_pcm_wav(path: Path, pcm: bytes) -> Path:
    """16 kHz mono 16-bit WAV of s16le bytes (frames as a live client sends them)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm)
    return path


def build_mix(
    clips: list[tuple[Path, str]],
    out: Path,
    *,
    minutes: float,
    seed: int = 0,
    nonspeech_every: int = 4,
    rotation: tuple[str, ...] = ROTATION,
) -> list[Section]:
    """Write a mix of about `minutes` to `out` (WAV) and `out.json`; clips repeat, each time with
    the next degradation of the rotation, so the same words come back louder, quieter, farther."""
    if not clips:
        raise LivecapError("no clips with references to build a mix from")
    rng = np.random.default_rng(seed)
    order = random.Random(seed)
    parts: list[np.ndarray] = []
    sections: list[Section] = []
    position = 0.0
    index = 0

    def add(audio: np.ndarray, section: Section) -> None:
        nonlocal position
        parts.append(audio)
        sections.append(section)
        position += len(audio) / SAMPLE_RATE

    while position < minutes * 60:
        path, reference = clips[index % len(clips)]
        degradation = rotation[index % len(rotation)]
        audio = _read(path, DEGRADATIONS[degradation])
        end = position + len(audio) / SAMPLE_RATE
        add(audio, Section(position, end, "speech", str(path), degradation, reference))
        gap = order.choice((0.4, 0.8, 1.3, 2.0, 3.0))
        add(
            np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32),
            Section(position, position + gap, "pause"),
        )
        index += 1
        if index % nonspeech_every == 0:
            kind = NONSPEECH[(index // nonspeech_every) % len(NONSPEECH)]
            seconds = order.choice((6.0, 10.0))
            add(nonspeech(kind, seconds, rng), Section(position, position + seconds, kind))
            add(np.zeros(SAMPLE_RATE, dtype=np.float32), Section(position, position + 1.0, "pause"))
    write_wav(out, np.concatenate(parts))
    out.with_suffix(".json").write_text(
        json.dumps([asdict(s) for s in sections], indent=1), encoding="utf-8"
    )
    return sections


def build_reading(clips: list[tuple[Path, str]], out: Path, *, minutes: float) -> list[Section]:
    """A continuous reading: long clips (`READING_MIN_S` or more) one after another, clean,
    reverberant, quiet and phone in turn, with only the mix's short gaps between them (no noise
    sections): the long utterances and cuts in speech that short clips never make."""
    return build_mix(
        clips, out, minutes=minutes, nonspeech_every=10**6, rotation=READING_ROTATION
    )


def load_sections(mix: Path) -> list[Section]:
    """The sections written beside a built mix."""
    return [
        Section(**row) for row in json.loads(mix.with_suffix(".json").read_text(encoding="utf-8"))
    ]
