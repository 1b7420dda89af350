"""Speaker labels for a finished file: one pass over the whole audio (speech, windows, embeddings,
clustering with every window of the file at once: the most accurate labels), then each caption's
words are labelled and captions split where the speaker changes. Its CPU time joins the run's
stats, so the RTF counts it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from livecap.config import Config
from livecap.diarize.cluster import Hints, cluster, names_by_first_use
from livecap.diarize.model import SpeakerModel, shared_model
from livecap.diarize.turns import Turn, label_captions, turns_from_windows
from livecap.pipeline.runner import RunResult


def diarize_audio(
    audio: np.ndarray, hints: Hints = Hints(), model: SpeakerModel | None = None
) -> list[Turn]:
    """Who speaks when in 16 kHz mono `audio`: turns named S1, S2, ... in order of first speech."""
    model = model or shared_model()
    windows, embeddings = model.embed(audio, model.speech(audio))
    labels = cluster(embeddings, hints)
    names = names_by_first_use(labels)
    return turns_from_windows(windows, [names[int(label)] for label in labels])


def decode(path: Path, track: int = 0) -> np.ndarray:
    """A file's audio as one 16 kHz mono array."""
    from livecap.sources.file import decode_blocks

    blocks = list(decode_blocks(path, track=track))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def diarize_result(result: RunResult, path: Path, config: Config, track: int = 0) -> RunResult:
    """`result` with speaker-labelled captions, and the labelling's CPU seconds in its stats."""
    started = time.process_time()
    turns = diarize_audio(decode(path, track), Hints.from_config(config))
    captions = label_captions(result.captions, turns)
    spent = time.process_time() - started
    stats = result.stats
    if stats is not None:
        stats = dataclasses.replace(stats, diarize_seconds=stats.diarize_seconds + spent,
                                    cpu_seconds=stats.cpu_seconds + spent)
    return dataclasses.replace(result, captions=captions, stats=stats)
