"""The server's memory budget (`--max-rss-mb`): above it interims are shed and new streams and
uploads wait; finals are never dropped. Also the cap on glibc's heap arenas.

glibc gives each thread that allocates its own heap arena (up to 8 per core) and keeps what a
thread freed in that arena; a server starts several threads per stream (VAD, the run loop,
translation), so sequential streams leave freed pages spread over many arenas and RSS creeps up.
`limit_arenas()` (before the server's threads start) caps them at ARENAS, and the hub's
`trim_heap()` once the streams have ended (livecap.asr.registry's: a model's unload uses it too)
returns the free pages; README, Server memory, has the measurements. Where there is no glibc both
do nothing.
"""

from __future__ import annotations

import os

import psutil

from livecap.asr.registry import glibc

ARENAS = 2  # heap arenas a server keeps (MALLOC_ARENA_MAX)
M_ARENA_MAX = -8  # glibc's mallopt parameter
RESUME_AT = 0.9  # pressure ends once RSS is back under this share of the budget
DEFAULT_SHARE = 0.5  # the default budget: this share of the machine's memory


def default_max_rss_mb() -> int:
    """Half the machine's memory, in MiB."""
    return int(psutil.virtual_memory().total * DEFAULT_SHARE / 2**20)


def limit_arenas(arenas: int = ARENAS) -> bool:
    """mallopt(M_ARENA_MAX): at most `arenas` heap arenas, as MALLOC_ARENA_MAX would (an explicit
    MALLOC_ARENA_MAX wins); False where that cannot be done."""
    libc = glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


class MemoryBudget:
    """RSS against a budget, with hysteresis so that shedding does not flap."""

    def __init__(self, budget_mb: int) -> None:
        self.budget_mb = budget_mb
        self.pressure = False
        self.rss_mb = 0.0
        self.peak_mb = 0.0
        self.episodes = 0  # times the budget was passed
        self._process = psutil.Process()

    def check(self) -> bool:
        """Sample RSS now; True while over the budget (until back under RESUME_AT of it)."""
        self.rss_mb = self._process.memory_info().rss / 2**20
        self.peak_mb = max(self.peak_mb, self.rss_mb)
        if not self.pressure and self.rss_mb > self.budget_mb:
            self.pressure = True
            self.episodes += 1
        elif self.pressure and self.rss_mb < self.budget_mb * RESUME_AT:
            self.pressure = False
        return self.pressure

    def describe(self) -> dict[str, float | int | bool]:
        return {
            "rss_mb": round(self.rss_mb, 1),
            "peak_rss_mb": round(self.peak_mb, 1),
            "max_rss_mb": self.budget_mb,
            "memory_pressure": self.pressure,
            "memory_pressure_episodes": self.episodes,
        }
