"""The sink contract: a base class owns batching, offsets and schema; a sink implements write().

Modelled on Quix Streams' ``BatchingSink``: an agent adds the rows it derived from a Kafka
partition's records together with their offsets; :meth:`BatchingSink.take` detaches everything
pending as one :class:`SegmentBatch` per partition (on the event loop), and :meth:`write` lands
one batch (typically in the history's thread). Rows are converted to the table's schema here,
so agents never rename columns or import storage schemas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from agentflux.sinks.history import History, Segment
from agentflux.sinks.tables import Table


@dataclass
class SegmentBatch:
    """Rows derived from one Kafka partition's records ``first..last``."""
    table: Table
    log: str
    partition: int
    first: int
    last: int
    data: pa.Table

    @property
    def rows(self) -> int:
        return self.data.num_rows


@dataclass
class _Pending:
    first: int
    last: int
    parts: list = field(default_factory=list)
    rows: int = 0


class BatchingSink:
    """Batches rows per partition with the offset range they came from.

    ``empty_segments``: hand over a batch for a range that produced no rows too (the sink whose
    segments record what has landed needs one for every range; others skip empty ones)."""

    def __init__(self, table: Table, log: str, *, empty_segments: bool = False):
        self.table = table
        self.log = log
        self.empty_segments = empty_segments
        self._pending: dict[int, _Pending] = {}
        self.since: float | None = None  # monotonic time of the oldest pending add

    def add(self, partition: int, first: int, last: int, rows: Sequence[Any] | pa.Table = ()) \
            -> None:
        """Rows derived from ``partition``'s records ``first..last`` (offsets), in any form the
        table converts (an Arrow table, or the agent's records)."""
        data = self.table.rows(rows) if len(rows) else None
        p = self._pending.get(partition)
        if p is None:
            p = self._pending[partition] = _Pending(first, last)
        else:
            p.first, p.last = min(p.first, first), max(p.last, last)
        if data is not None and data.num_rows:
            p.parts.append(data)
            p.rows += data.num_rows
        if self.since is None:
            self.since = time.monotonic()

    def add_ranges(self, ranges: dict[int, Sequence[int]], rows: Any = ()) -> None:
        """Rows of several partitions (told apart by their ``kafka_partition`` column) with the
        offset range ``(first, last)`` of each partition's records."""
        data = self.table.rows(rows) if len(rows) else None
        if data is not None and len(ranges) > 1:
            part = data.column("kafka_partition").to_numpy()
        for p, (first, last) in ranges.items():
            if data is None:
                self.add(p, first, last)
            elif len(ranges) == 1:
                self.add(p, first, last, data)
            else:
                self.add(p, first, last, data.take(np.flatnonzero(part == p)))

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self._pending.values())

    def age(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def partitions(self) -> list[int]:
        """The partitions with rows held."""
        return list(self._pending)

    def __bool__(self) -> bool:
        return bool(self._pending)

    def take(self) -> list[SegmentBatch]:
        """Detach everything pending, one batch per partition."""
        pending, self._pending, self.since = self._pending, {}, None
        out = []
        for partition, p in sorted(pending.items()):
            if not p.rows and not self.empty_segments:
                continue
            data = pa.concat_tables(p.parts) if p.parts else self.table.empty()
            out.append(SegmentBatch(self.table, self.log, partition, p.first, p.last, data))
        return out

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self._pending.pop(p, None)
        if not self._pending:
            self.since = None

    def write(self, batch: SegmentBatch) -> Any:
        raise NotImplementedError


class ParquetSink(BatchingSink):
    """Lands each batch as one history segment."""

    def __init__(self, table: Table, log: str, history: History, **kw: Any):
        super().__init__(table, log, **kw)
        self.history = history

    def write(self, batch: SegmentBatch) -> Segment:
        return self.history.write_segment(batch.table, batch.data, log=batch.log,
                                          partition=batch.partition, first=batch.first,
                                          last=batch.last)
