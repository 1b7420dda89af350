"""Typed messages that flow between pipeline stages.

Every message carries the timestamps the statistics need, so latency is measured from data:
all times are `time.monotonic()` seconds unless a name says the time is in stream seconds.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AudioChunk:
    """A block of 16 kHz mono audio; `start` is its position in the stream (seconds)."""

    samples: np.ndarray
    start: float
    t_capture: float  # when the last sample of the block was captured

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class Utterance:
    """Speech cut by the VAD. `final` is False for the still-open utterance so far (an interim)."""

    stream_id: str
    seq: int  # order of final utterances in the stream; an interim shares the seq it will get
    start: float  # stream seconds
    end: float
    samples: np.ndarray
    final: bool
    t_speech_end: float  # capture time of the last speech sample
    t_emitted: float  # when the VAD stage gave it on (end-of-speech wait ends here)
    # packed audio: (packed_start, start, end, speech_until) of each utterance in it
    pieces: tuple[tuple[float, float, float, float | None], ...] = ()
    speech_until: float | None = None  # stream seconds where the VAD heard speech end, if known
    continued: bool = False  # cut at the length limit: the speech goes on in the next utterance

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def audio_between(self, start: float, end: float) -> np.ndarray:
        """The samples between two times inside `samples` (as the ASR reports them)."""
        return self.samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]

    def span_to_stream(self, start: float, end: float) -> tuple[float, float]:
        """Map a span (a word) back to stream seconds, kept inside the piece it starts in, so that a
        word never stretches over the silence that packing removed."""
        if not self.pieces:
            return self.start + start, self.start + end
        piece_end = self.pieces[self._piece(start)][2]
        first = self.to_stream_time(start)
        return first, max(first, min(self.to_stream_time(end), piece_end))

    def _piece(self, t: float) -> int:
        return max(0, bisect.bisect_right([p[0] for p in self.pieces], t) - 1)

    def to_stream_time(self, t: float) -> float:
        """Map a time inside `samples` back to stream seconds (packing removes silences)."""
        if not self.pieces:
            return self.start + t
        packed_start, start, end, _ = self.pieces[self._piece(t)]
        return min(start + max(0.0, t - packed_start), end)

    def past_speech(self, t: float) -> float:
        """Seconds by which a time inside `samples` (or in the silence decoded after them) lies
        after the end of the speech it follows: negative within speech, -inf where not known.
        Packed audio is judged by the piece the time falls in."""
        if not self.pieces:
            until = self.speech_until
            return -math.inf if until is None else self.start + t - until
        packed_start, start, _, until = self.pieces[self._piece(t)]
        return -math.inf if until is None else t - packed_start - (until - start)


@dataclass(frozen=True)
class Word:
    """A word of a final caption, in stream seconds."""

    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None  # with speaker labels on: "S1", "S2", ...

    def to_dict(self) -> dict:
        out = {"start": round(self.start, 3), "end": round(self.end, 3), "word": self.word,
               "probability": round(self.probability, 3)}
        if self.speaker is not None:
            out["speaker"] = self.speaker
        return out


@dataclass(frozen=True)
class Caption:
    """A caption as shown and written: original text, optional translation, and its timings."""

    stream_id: str
    seq: int
    start: float
    end: float
    text: str
    final: bool
    language: str | None = None
    translation: str | None = None
    translation_failed: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # monotonic times of each stage
    words: tuple[Word, ...] = ()
    utterance: int = 0  # the utterance (or packed window) it was transcribed from
    last_in_utterance: bool = True  # False while more captions of the same utterance follow
    # stream clock (seconds of audio captured) when it was handed out
    emitted_at: float | None = None
    # for speech translation
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)
    # with speaker labels on: "S1", "S2", ... (a caption is one speaker's)
    speaker: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (used by the journal, jsonl events and the json writer)."""
        out = {
            "seq": self.seq,
            "utterance": self.utterance,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "language": self.language,
        }
        if self.speaker is not None:
            out["speaker"] = self.speaker
        if self.translation is not None:
            out["translation"] = self.translation
            out["translation_failed"] = self.translation_failed
        if self.words:
            out["words"] = [w.to_dict() for w in self.words]
        if not self.last_in_utterance:
            out["last_in_utterance"] = False
        if self.emitted_at is not None:
            out["emitted_at"] = round(self.emitted_at, 3)
        return out


@dataclass(frozen=True)
class InterimCaption:
    """The open utterance as heard so far: a stable committed part and a tail that may change."""

    stream_id: str
    utterance: int  # the utterance it previews: its finals carry the same `utterance`
    committed: str
    tail: str
    new_words: int  # words that were not shown before
    t_audio_end: float  # capture time of the end of the audio it was computed on
    audio_end: float = 0.0  # stream seconds: the end of the audio it was computed on
    # stream clock (seconds of audio captured) when it was handed out
    emitted_at: float | None = None

    def to_dict(self) -> dict:
        out = {"utterance": self.utterance, "committed": self.committed, "tail": self.tail,
               "audio_end": round(self.audio_end, 3)}
        if self.emitted_at is not None:
            out["emitted_at"] = round(self.emitted_at, 3)
        return out


@dataclass(frozen=True)
class SpeakerRevision:
    """Earlier finals' speakers, revised once more speech was heard: (seq, speaker) pairs."""

    labels: tuple[tuple[int, str], ...]

    def to_dict(self) -> dict:
        return {"labels": [{"seq": seq, "speaker": speaker} for seq, speaker in self.labels]}


@dataclass(frozen=True)
class StreamError:
    """Something went wrong; `fatal` errors end the stream (captions so far are kept)."""

    message: str
    fatal: bool = False


@dataclass(frozen=True)
class StreamEnd:
    """No more events will come; `reason` says why it ended early, if it did."""

    reason: str | None = None


VAD_KINDS = ("speech_started", "speech_stopped", "finalized", "cleared")


@dataclass(frozen=True)
class VadEvent:
    """What the VAD decided, for protocols that report it (only streams opened with `vad_events`).
    `speech_started` / `speech_stopped` bracket an utterance (`kept`: a final will come for it; a
    too-short or tonal one is dropped). `finalized` and `cleared` answer the source's `finalize()`
    and `clear()`: the open utterance (None when there was none) was cut, or dropped."""

    stream_id: str
    kind: str  # one of VAD_KINDS
    utterance: int | None  # the utterance it concerns (finals carry the same number)
    at: float  # stream seconds
    kept: bool = True

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "utterance": self.utterance,
            "at": round(self.at, 3),
            "kept": self.kept,
        }


Event = Caption | InterimCaption | StreamError | StreamEnd | VadEvent | SpeakerRevision
