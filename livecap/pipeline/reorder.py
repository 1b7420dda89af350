"""Ordered reassembly: results arrive in any order, leave in sequence order."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Reorderer(Generic[T]):
    """Hold results until every earlier sequence number has arrived."""

    def __init__(self, first_seq: int = 0) -> None:
        self.next_seq = first_seq
        self._held: dict[int, T] = {}

    def push(self, seq: int, item: T) -> list[T]:
        """Add one result; return the results that are now ready, in order."""
        if seq < self.next_seq or seq in self._held:
            raise ValueError(f"sequence number {seq} was already delivered")
        self._held[seq] = item
        ready = []
        while self.next_seq in self._held:
            ready.append(self._held.pop(self.next_seq))
            self.next_seq += 1
        return ready

    @property
    def waiting(self) -> int:
        return len(self._held)
