"""Live speaker labels: each final gets a speaker as it is delivered, and earlier finals' labels are
revised when more speech shows they were wrong.

Every final's audio is cut into windows and embedded; all the windows kept so far (the last
`KEEP_WINDOWS`) are clustered again with each final, so its label uses everything heard. Cluster
numbers change between runs; names must not: each new clustering is matched to the names the
windows had (the assignment that keeps most windows' names), and a cluster no name matches gets a
new one. A final whose majority name changed is revised: `SpeakerRevision` names its `seq`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from livecap.diarize.cluster import Hints, cluster
from livecap.diarize.model import SpeakerModel, shared_model
from livecap.messages import Caption, SpeakerRevision
from livecap.pipeline.stats import StreamStats

KEEP_WINDOWS = 400  # windows clustered each time (minutes of speech): bounds the cost per final
REVISE_FINALS = 50  # only the most recent finals are revised
EARLY_WINDOWS = 30  # before this many windows, a speaker count is taken as an upper bound only


@dataclass
class _Final:
    seq: int
    windows: int  # how many of the kept windows are this final's (its last ones)
    speaker: str


class LiveSpeakers:
    """One stream's speaker labels (called from its delivery thread, one final at a time)."""

    def __init__(self, hints: Hints, stats: StreamStats, model: SpeakerModel | None = None) -> None:
        self.hints, self.stats = hints, stats
        self.model = model or shared_model()
        self._embeddings: deque[np.ndarray] = deque(maxlen=KEEP_WINDOWS)
        # each kept window's current name
        self._names: deque[str | None] = deque(maxlen=KEEP_WINDOWS)
        self._finals: deque[_Final] = deque(maxlen=REVISE_FINALS)

    def label(self, caption: Caption) -> tuple[Caption, SpeakerRevision | None]:
        """`caption` with its speaker (none without audio),
        and the revision of earlier finals it led to."""
        if caption.audio is None or not len(caption.audio):
            return caption, None
        started = time.thread_time()
        try:
            _, embeddings = self.model.embed(caption.audio, [(0.0, len(caption.audio) / 16000)])
            if not len(embeddings):
                return caption, None
            self._embeddings.extend(embeddings)
            self._names.extend([None] * len(embeddings))
            names = self._rename(cluster(np.stack(self._embeddings), self._hints()))
            speaker = _majority(names[-len(embeddings):])
            revised = self._revise(names, len(embeddings))
            self._finals.append(_Final(caption.seq, len(embeddings), speaker))
            self._names = deque(names, maxlen=KEEP_WINDOWS)
        finally:
            self.stats.add_diarize(time.thread_time() - started)
        labelled = dataclasses.replace(
            caption,
            speaker=speaker,
            words=tuple(dataclasses.replace(w, speaker=speaker) for w in caption.words),
        )
        return labelled, SpeakerRevision(tuple(revised)) if revised else None

    def _hints(self) -> Hints:
        """A count or a least count is the whole conversation's: early on,
        when few windows have been heard, it is only an upper bound."""
        if len(self._embeddings) >= EARLY_WINDOWS:
            return self.hints
        return Hints(max_speakers=self.hints.bounds[1])

    def _rename(self, labels: np.ndarray) -> list[str]:
        """Names for the new clusters: each takes the old name most of its windows had, the larger
        clusters choosing first; the rest get the lowest names no cluster has."""
        votes: dict[int, Counter[str]] = {int(c): Counter() for c in labels}
        for label, name in zip(labels, self._names):
            if name is not None:
                votes[int(label)][name] += 1
        naming: dict[int, str] = {}
        for label in sorted(votes, key=lambda c: -sum(votes[c].values())):
            choice = next(
                (name for name, _ in votes[label].most_common() if name not in naming.values()),
                None,
            )
            if choice is not None:
                naming[label] = choice
        for label in sorted(set(votes) - set(naming)):
            naming[label] = next(
                f"S{n}" for n in itertools.count(1) if f"S{n}" not in naming.values()
            )
        return [naming[int(label)] for label in labels]

    def _revise(self, names: list[str], new: int) -> list[tuple[int, str]]:
        """(seq, speaker) of the kept finals whose majority name changed."""
        revised = []
        end = len(names) - new
        for final in reversed(self._finals):
            start = end - final.windows
            if start < 0:
                break  # its windows are no longer kept
            speaker = _majority(names[start:end])
            if speaker != final.speaker:
                final.speaker = speaker
                revised.append((final.seq, speaker))
            end = start
        return sorted(revised)


def _majority(names: list[str]) -> str:
    return Counter(names).most_common(1)[0][0]
