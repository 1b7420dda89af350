"""Speakers from speaker embeddings: spectral clustering (senko's, after 3D-Speaker) with the
user's hints, and stable names S1, S2, ... in order of first speech."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livecap.config import Config
from livecap.errors import LivecapError

MAX_SPEAKERS = 32
MIN_POINTS = 10  # fewer windows than this are too few to tell speakers apart without a count
# clusters whose centres are this alike are one speaker (when no count is given)
MERGE_COSINE = 0.875
# windows of one voice are at least this alike on average (cosine); two voices less
SAME_SPEAKER = 0.6


@dataclass(frozen=True)
class Hints:
    """What the user knows about the speakers: an exact count, or bounds."""

    speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        low, high = self.min_speakers, self.max_speakers
        if low is not None and high is not None and low > high:
            raise LivecapError(f"min_speakers ({low}) is more than max_speakers ({high})")

    @classmethod
    def from_config(cls, config: Config) -> Hints:
        """The speaker-count hints a configuration gives."""
        d = config.diarize
        return cls(d.speakers, d.min_speakers, d.max_speakers)

    @property
    def bounds(self) -> tuple[int, int]:
        """The least and most speakers allowed."""
        if self.speakers is not None:
            return self.speakers, self.speakers
        return self.min_speakers or 1, self.max_speakers or 15


def cluster(embeddings: np.ndarray, hints: Hints = Hints()) -> np.ndarray:
    """A speaker index for each embedding (row), 0-based, within the hinted bounds."""
    from senko.cluster.cluster_cpu import CommonClustering

    count = len(embeddings)
    low, high = hints.bounds
    high = min(high, max(count - 1, 1))
    if count < 2 or high <= 1:
        return np.zeros(count, int)
    if count < MIN_POINTS or count <= low + 1:  # too few for a spectral graph
        return agglomerate(embeddings, min(low, count), high)
    known = hints.speakers is not None or low > 1
    engine = CommonClustering(
        "spectral",
        cluster_line=MIN_POINTS,
        mer_cos=None if known else MERGE_COSINE,
        min_cluster_size=4,
        min_num_spks=min(low, high),
        max_num_spks=high,
        pval=0.012,
        oracle_num=hints.speakers,
    )
    return np.asarray(engine(np.array(embeddings, copy=True)), int)


def agglomerate(embeddings: np.ndarray, low: int = 1, high: int = MAX_SPEAKERS) -> np.ndarray:
    """Average-linkage clustering: windows join while they are as alike as one voice is, then the
    count is brought inside [low, high]."""
    from sklearn.cluster import AgglomerativeClustering

    def run(**how: float) -> np.ndarray:
        return AgglomerativeClustering(metric="cosine", linkage="average", **how).fit_predict(
            embeddings
        )

    labels = run(n_clusters=None, distance_threshold=1 - SAME_SPEAKER)
    found = len(set(labels))
    return labels if low <= found <= high else run(n_clusters=min(max(found, low), high))


def names_by_first_use(labels: list[int] | np.ndarray) -> dict[int, str]:
    """S1 for the first speaker heard, S2 for the next new one, ..."""
    names: dict[int, str] = {}
    for label in labels:
        names.setdefault(int(label), f"S{len(names) + 1}")
    return names
