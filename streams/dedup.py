"""De-duplication of event ids: the history is idempotent on ``id`` within a horizon.

The horizon is the last ``capacity`` events landed from the same Kafka partition (default
1,000,000; ``AGENTFLUX_DEDUP_EVENTS``). A producer that re-sends after a timeout, a spool replayed
after an outage, or a client that publishes twice keys the same session to the same partition, so
a per-partition horizon catches them; an event re-sent under another key (another partition) or
after more than ``capacity`` newer events of its partition lands again.

Memory is 8 bytes per remembered id: ids are kept as 64-bit hashes in a ring of sorted numpy
generations, so a whole batch is checked with a few vectorised binary searches and no per-event
set lookups. A false positive needs a 64-bit hash collision among the remembered ids (about
1 in 10^13 per event at a million ids). After a restart the horizon is warmed from the history.
"""

from __future__ import annotations

import collections
from typing import Iterable, Sequence

import numpy as np

DEFAULT_CAPACITY = 1_000_000
GENERATIONS = 8


def id_hashes(ids: Iterable[str]) -> np.ndarray:
    """64-bit hashes of event ids (stable within the process, which is all the horizon needs:
    it is rebuilt from the history on start)."""
    return np.fromiter(map(hash, ids), dtype=np.int64)


class _Partition:
    __slots__ = ("generations", "current", "gen_size")

    def __init__(self, gen_size: int):
        self.gen_size = gen_size
        self.generations: collections.deque = collections.deque(maxlen=GENERATIONS)
        self.current = np.empty(0, dtype=np.int64)

    def contains(self, h: np.ndarray) -> np.ndarray:
        seen = np.zeros(len(h), dtype=bool)
        for arr in (self.current, *self.generations):
            if len(arr):
                i = np.searchsorted(arr, h)
                i[i == len(arr)] = 0
                seen |= arr[i] == h
        return seen

    def add(self, h: np.ndarray) -> None:
        h = np.sort(h)  # (usually already sorted by the caller: cheap)
        # a sorted merge: O(n) copying instead of re-sorting the generation
        cur = np.insert(self.current, np.searchsorted(self.current, h), h)
        if len(cur) >= self.gen_size:  # the generation is full: freeze it, start the next
            self.generations.appendleft(cur)
            cur = np.empty(0, dtype=np.int64)
        self.current = cur


class RecentIds:
    """The ids landed recently, per partition. Not thread-safe: one landing loop owns it."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        if capacity < GENERATIONS:
            raise ValueError(f"the de-duplication horizon must be >= {GENERATIONS} events, "
                             f"got {capacity!r} (AGENTFLUX_DEDUP_EVENTS)")
        self.capacity = capacity
        self._parts: dict[int, _Partition] = {}

    def known(self, partition: int) -> bool:
        return partition in self._parts

    def warm(self, partition: int, ids: Sequence[str]) -> None:
        """Start remembering ``partition`` with the ids already landed from it."""
        part = self._parts[partition] = _Partition(max(1, self.capacity // GENERATIONS))
        if ids:
            part.add(id_hashes(reversed(ids)))

    def duplicates(self, partition: int, hashes: np.ndarray) -> np.ndarray:
        """A mask of the events in ``hashes`` (one batch of a partition, in offset order) that
        are duplicates: of a remembered id, or of an earlier event in the same batch."""
        # sorted queries make the binary searches walk memory in order (several times faster);
        # a stable sort keeps the first of equal ids first, so only the repeats are marked
        order = np.argsort(hashes, kind="stable")
        hs = hashes[order]
        dup_sorted = np.zeros(len(hs), dtype=bool)
        dup_sorted[1:] = hs[1:] == hs[:-1]
        part = self._parts.get(partition)
        if part is not None:
            dup_sorted |= part.contains(hs)
        dup = np.empty(len(hs), dtype=bool)
        dup[order] = dup_sorted
        return dup

    def remember(self, partition: int, hashes: np.ndarray) -> None:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(max(1, self.capacity // GENERATIONS))
        part.add(hashes)

    def forget(self, partition: int) -> None:
        self._parts.pop(partition, None)
