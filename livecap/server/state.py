"""What replicas of one service share, behind one small interface so that the sessions and the
media library have one code path whether a server runs alone or in a cluster.

`LocalState` keeps nothing outside the process (a server alone, as without `--redis-url`): every
session is this server's own, a claim always succeeds and the feed is the local fan-out itself.
`livecap.server.cluster.RedisState` keeps the same things in Redis for replicas that share them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import Any, Protocol


class SessionHost(Protocol):
    """What a cluster asks of this replica's sessions (implemented by `Sessions`)."""

    def owned_records(self) -> list[dict[str, Any]]:
        """The records of the sessions this replica produces, as they are now."""

    def viewer_counts(self) -> dict[str, int]:
        """Viewers connected here, per session."""

    def load(self) -> dict[str, Any]:
        """This replica's load (streams, viewers, draining) for the cluster view."""

    def media_on_disk(self) -> dict[str, dict[str, Any]]:
        """The media files in this replica's folder (shared storage: the service's)."""

    async def reconcile(
        self, records: list[dict[str, Any]], orphans: list[dict[str, Any]], stops: set[str]
    ) -> None:
        """React to the shared records: stops asked for, sessions owned elsewhere now, orphans whose
        owner is gone."""


class SharedState:
    """The in-process state: one server alone. Subclassed by the Redis state of a cluster."""

    clustered = False

    def __init__(self, replica: str | None = None) -> None:
        self.replica = replica or socket.gethostname()

    async def start(self, host: SessionHost) -> None:
        """Begin any background work (a cluster's heartbeat, leases and takeovers)."""

    async def close(self) -> None:
        """Stop the background work, flushing what is queued while the store can take it."""

    # -- the media library's index --------------------------------------------------------------

    async def media_items(self, local: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Every media item of the service (alone: this server's own)."""
        return dict(local)

    async def media_put(self, item: dict[str, Any]) -> None:
        """Announce a stored file."""

    async def media_remove(self, media_id: str) -> None:
        """Forget a deleted file."""

    # -- session records and ownership ----------------------------------------------------------

    async def put_session(self, record: dict[str, Any]) -> None:
        """Publish a session's record (state, owner, position...)."""

    async def session_records(self) -> list[dict[str, Any]]:
        """The records of sessions owned by other replicas (alone: none)."""
        return []

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        """Another replica's session record, or None."""
        return None

    async def claim(self, session_id: str) -> bool:
        """Take the lease that makes this replica a session's producer."""
        return True

    async def release(self, session_id: str) -> None:
        """Give a session's lease up (it ended, or is handed over)."""

    # -- a session's records --------------------------------------------------------------------

    def append(self, session_id: str, record: dict[str, Any], next_seq: int) -> None:
        """Hand a record the owner produced (`next_seq`: the seq of the next final, before this
        record) to other replicas' viewers (alone: there are none)."""

    async def catch_up(self, session_id: str, fanout: Any) -> None:
        """Hand `fanout` the shared finals it has not had (alone: it has had them all)."""

    async def follow(
        self, session_id: str, fanout: Any, synced: asyncio.Event, stops: tuple[asyncio.Event, ...]
    ) -> None:
        """Feed `fanout` from another replica's records until the session ends or a stop is set
        (alone: every session is this server's own, so there is nothing to follow)."""
        synced.set()

    async def request_stop(self, session_id: str) -> None:
        """Ask the replica that produces a session to stop it (alone: it is this one)."""

    def viewers_elsewhere(self, session_id: str) -> int:
        """Viewers of a session on other replicas."""
        return 0

    def status_report(self) -> dict[str, Any]:
        """For /status: nothing alone; the cluster view in a cluster."""
        return {}
