"""The history: immutable Parquet segments that many workers write and any reader reads.

Layout, under one root (a local directory or any filesystem pyarrow supports, e.g. ``s3://``)::

    <root>/<table>/_schema.parquet                       no rows: the table's columns (for views)
    <root>/<table>/day=YYYY-MM-DD/<log>-p<partition>-<first>-<last>.parquet

A segment holds the rows landed from one Kafka partition's records ``first..last`` (offsets,
zero-padded so names sort numerically); ``log`` names the log those offsets count in (a hash of
the cluster id and the topic id, :func:`log_id`), so a topic that is deleted and created again,
or another cluster, starts a new offset space instead of colliding with the old one. ``day`` is
the UTC day the segment was written (retention drops whole days). A segment is written under a
temporary name and renamed into place (on object stores, one PUT), so a reader never sees half a
file; local segments are fsynced before the rename.

**Visibility.** Segments may overlap: a compacted segment covers the ones it merged until they
are deleted, and a worker that lost a partition without knowing it (a long pause) may still
rename a late segment over offsets the new owner landed. Readers never see a row twice because
of one rule, applied by the DuckDB views and by :meth:`History.read` alike: per (log, partition)
order the segments by ``first`` ascending then ``last`` descending; a row of a segment is visible
when its offset is above every ``last`` before that segment in the order (its *floor*). The
content of an offset is a function of the Kafka record, so which copy wins does not matter.
A merged segment becomes visible in one rename and hides its sources at once; sources are deleted
only ``grace_s`` later, so a query that listed them a moment before still finds them.

**Resume.** The highest ``last`` of a table's segments for a (log, partition) is where a worker
resumes that partition (:meth:`History.landed_offsets`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from agentflux.sinks.tables import TABLES, Table

SEGMENT_RE = re.compile(r"^([0-9a-f]{12})-p(\d{5})-(\d{20})-(\d{20})\.parquet$")
# the same pattern for DuckDB's regexp_extract over full paths
SEGMENT_SQL_RE = r"([0-9a-f]{12})-p(\d{5})-(\d{20})-(\d{20})\.parquet$"
SCHEMA_FILE = "_schema.parquet"
TMP_SUFFIX = ".tmp"
OBJECT_STORES = ("s3", "gcs", "abfs")  # pyarrow FileSystem.type_name of key-value stores
NO_LOG = "0" * 12  # offsets whose log is not known (in-process tests, imports without identity)
MERGE_BATCH_ROWS = 16_384  # a merge holds a few batches: ~40 MB at most (65,536: ~125 MB)
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "write_statistics": [
    "ts", "type", "kafka_offset", "kafka_partition", "window_start", "window_end", "landed_at"]}


def log_id(cluster_id: str | None, topic_id: str | None) -> str:
    """The name of the offset space a segment's offsets count in."""
    if not cluster_id and not topic_id:
        return NO_LOG
    return hashlib.sha1(f"{cluster_id}/{topic_id}".encode()).hexdigest()[:12]


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


@dataclasses.dataclass(frozen=True)
class Segment:
    table: str
    day: str
    log: str
    partition: int
    first: int
    last: int
    path: str
    mtime: float = 0.0

    @property
    def group(self) -> tuple[str, int]:
        return (self.log, self.partition)


def segment_name(log: str, partition: int, first: int, last: int) -> str:
    return f"{log}-p{partition:05d}-{first:020d}-{last:020d}.parquet"


def with_floors(segments: Iterable[Segment]) -> list[tuple[Segment, int]]:
    """Each segment with its floor (see the module docstring), in visibility order per group;
    a segment whose floor >= last contributes nothing."""
    out: list[tuple[Segment, int]] = []
    by_group: dict[tuple, list[Segment]] = {}
    for s in segments:
        by_group.setdefault(s.group, []).append(s)
    for group in sorted(by_group):
        floor = -1
        for s in sorted(by_group[group], key=lambda s: (s.first, -s.last, s.path)):
            out.append((s, floor))
            floor = max(floor, s.last)
    return out


STATE_DIR = "_state"  # processors' state per partition, beside the tables
STATE_SUFFIX = ".state"


class History:
    """One history root. Thread-safe (no state beyond the filesystem handle)."""

    def __init__(self, root: str | os.PathLike, filesystem: pafs.FileSystem | None = None):
        root = str(root)
        if filesystem is not None:
            self.fs, self.base = filesystem, root.rstrip("/")
        elif "://" in root:
            uri = root
            if uri.startswith("s3://") and "allow_delayed_open=" not in uri:
                # a small segment is then one PutObject, not a three-request multipart upload
                uri += ("&" if "?" in uri else "?") + "allow_delayed_open=true"
            self.fs, self.base = pafs.FileSystem.from_uri(uri)
            self.base = self.base.rstrip("/")
        else:
            self.fs, self.base = pafs.LocalFileSystem(), os.path.abspath(root)
        # for messages: a URI without credentials someone may have put in it (user:secret@)
        self.root = re.sub(r"//[^/@]*@", "//", root) if "://" in root else self.base
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        # keys, not directories: nothing to create before a PUT (create_dir would PUT markers)
        self.object_store = self.fs.type_name in OBJECT_STORES

    # --- layout -----------------------------------------------------------------------------

    def table_dir(self, table: str) -> str:
        return f"{self.base}/{table}"

    def init(self, tables: Iterable[Table] = TABLES.values()) -> None:
        """Create the table directories and their schema files (idempotent)."""
        for t in tables:
            d = self.table_dir(t.name)
            self.fs.create_dir(d, recursive=True)
            path = f"{d}/{SCHEMA_FILE}"
            info = self.fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound or not self._same_schema(path, t.schema):
                self._publish(path, t.empty(), {})

    def _same_schema(self, path: str, schema: pa.Schema) -> bool:
        try:
            return pq.read_schema(path, filesystem=self.fs).remove_metadata().equals(schema)
        except (OSError, pa.ArrowInvalid):
            return False

    def segments(self, table: str, *, partitions: Iterable[int] | None = None,
                 log: str | None = None) -> list[Segment]:
        """The table's segments (parsed from the listing; temporary files excluded)."""
        want = set(partitions) if partitions is not None else None
        out = []
        for info in self._list(self.table_dir(table)):
            name = info.base_name
            m = SEGMENT_RE.match(name)
            if not m:
                continue
            lg, p = m.group(1), int(m.group(2))
            if (want is not None and p not in want) or (log is not None and lg != log):
                continue
            day = info.path.rsplit("/", 2)[-2]
            out.append(Segment(table, day.removeprefix("day="), lg, p, int(m.group(3)),
                               int(m.group(4)), info.path,
                               info.mtime.timestamp() if info.mtime else 0.0))
        return out

    def _list(self, directory: str) -> list[pafs.FileInfo]:
        sel = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
        return [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]

    # --- writing ----------------------------------------------------------------------------

    def write_segment(self, table: Table, data: pa.Table, *, log: str, partition: int,
                      first: int, last: int, day: str | None = None) -> Segment:
        """Publish ``data`` (already in ``table``'s schema) as the segment of ``partition``'s
        offsets ``first..last``. Zero rows is a valid segment: it records that the offsets were
        landed (their records held only dead letters, or only duplicates)."""
        if first > last or first < 0:
            raise ValueError(f"bad offset range {first}..{last}")
        day = day or today()
        d = f"{self.table_dir(table.name)}/day={day}"
        path = f"{d}/{segment_name(log, partition, first, last)}"
        if not self.object_store:
            self.fs.create_dir(d, recursive=True)
        self._publish(path, data, {"agentflux.log": log, "agentflux.partition": str(partition),
                                   "agentflux.first": str(first), "agentflux.last": str(last)})
        return Segment(table.name, day, log, partition, first, last, path, time.time())

    def _publish(self, path: str, data: pa.Table, meta: dict[str, str]) -> None:
        if meta:
            data = data.replace_schema_metadata({**(data.schema.metadata or {}), **meta})
        if self.object_store:  # a PUT is visible only once complete
            # Encode in memory first: closing an S3 output stream completes the upload, even
            # when leaving the ``with`` on an exception, so a failed encoding written into the
            # stream would publish a truncated segment under its final name.
            buf = pa.BufferOutputStream()
            pq.write_table(data, buf, **PARQUET_OPTIONS)
            with self.fs.open_output_stream(path) as out:
                out.write(buf.getvalue())
            return
        self._publish_stream(path, lambda out: pq.write_table(data, out, **PARQUET_OPTIONS))

    def _publish_stream(self, path: str, write: Callable[[Any], None]) -> None:
        """``write(out)`` into a temporary name, then move it into place: a rename after an
        fsync on a local disk; a move on other filesystems (on an object store a server-side
        copy: a failed write leaves only a temporary key, which the compactor deletes)."""
        tmp = f"{path}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
        if not self.local:
            try:
                with self.fs.open_output_stream(tmp) as out:
                    write(out)
                self.fs.move(tmp, path)
            except BaseException:
                self._delete(tmp)
                raise
            return
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        fd = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a power loss
        finally:
            os.close(fd)

    # --- state that moves with a partition ---------------------------------------------------

    def _state_dir(self, kind: str, log: str, partition: int) -> str:
        return f"{self.base}/{STATE_DIR}/{kind}/{log}/p{partition}"

    def put_state(self, kind: str, log: str, partition: int, offset: int, data: bytes) -> None:
        """Store a processor's state of ``partition`` as of ``offset`` (atomic: a reader sees
        the old file or the new one; written again under the same offset, it replaces it)."""
        d = self._state_dir(kind, log, partition)
        if not self.object_store:
            self.fs.create_dir(d, recursive=True)
        path = f"{d}/{offset:020d}{STATE_SUFFIX}"
        if self.object_store:
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        self._publish_stream(path, lambda out: out.write(data))

    def state_offsets(self, kind: str, log: str, partition: int) -> list[int]:
        out = []
        for info in self._list(self._state_dir(kind, log, partition)):
            name = info.base_name
            if name.endswith(STATE_SUFFIX) and name[:-len(STATE_SUFFIX)].isdigit():
                out.append(int(name[:-len(STATE_SUFFIX)]))
        return sorted(out)

    def get_state(self, kind: str, log: str, partition: int, offset: int) -> bytes | None:
        path = f"{self._state_dir(kind, log, partition)}/{offset:020d}{STATE_SUFFIX}"
        try:
            with self.fs.open_input_stream(path) as f:
                return f.read()
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower() \
                    or "No such file" in str(exc):
                return None
            raise

    def drop_state(self, kind: str, log: str, partition: int, offsets: Iterable[int]) -> None:
        d = self._state_dir(kind, log, partition)
        for o in offsets:
            self._delete(f"{d}/{o:020d}{STATE_SUFFIX}")

    # --- reading ----------------------------------------------------------------------------

    def landed_offsets(self, table: str, log: str) -> dict[int, int]:
        """The last offset landed in ``table`` per partition of ``log`` (absent: none)."""
        out: dict[int, int] = {}
        for s in self.segments(table, log=log):
            out[s.partition] = max(out.get(s.partition, -1), s.last)
        return out

    def visible(self, table: str, **kw: object) -> Iterator[tuple[Segment, int]]:
        """Segments that contribute rows, each with its floor."""
        for s, floor in with_floors(self.segments(table, **kw)):  # type: ignore[arg-type]
            if floor < s.last:
                yield s, floor

    def _read(self, s: Segment, floor: int, columns: Sequence[str] | None) -> pa.Table:
        cols = None if columns is None else list(dict.fromkeys([*columns, "kafka_offset"]))
        t = pq.read_table(s.path, filesystem=self.fs, columns=cols)
        if floor >= s.first:
            t = t.filter(pc.greater(t["kafka_offset"], floor))
        return t if columns is None else t.select(list(columns))

    def read(self, table: str, columns: Sequence[str] | None = None, after: int | None = None,
             **kw: object) -> pa.Table:
        """The table's visible rows (the same rows the DuckDB views show); with ``after``,
        only segments holding offsets past it are read (rows at or below it may remain)."""
        parts = [self._read(s, floor, columns) for s, floor in self.visible(table, **kw)
                 if after is None or s.last > after]
        if not parts:
            schema = TABLES[table].schema
            return schema.empty_table() if columns is None else schema.empty_table().select(
                list(columns))
        return pa.concat_tables(parts)

    def count(self, table: str) -> int:
        """Visible rows, from the segments' metadata (reads offsets only where segments
        overlap)."""
        n = 0
        for s, floor in self.visible(table):
            if floor < s.first:
                n += pq.ParquetFile(s.path, filesystem=self.fs).metadata.num_rows
            else:
                n += self._read(s, floor, ["kafka_offset"]).num_rows
        return n

    def recent_ids(self, log: str, partition: int, limit: int,
                   upto: int | None = None) -> list[str]:
        """Ids of the last ``limit`` events landed from ``partition`` (at offsets up to ``upto``,
        if given), newest first: to warm the de-duplication of event ids after a restart or an
        assignment. A worker resuming after offset ``upto`` passes it: a segment a previous
        owner lands late, after ``upto``, holds the records this worker is about to read again,
        and they must land again as the same events (the visibility rule assumes an offset has
        the same rows in every segment), not as duplicates of themselves."""
        out: list[str] = []
        segs = sorted(self.visible("events", partitions=[partition], log=log),
                      key=lambda sf: -sf[0].last)
        for s, floor in segs:
            if len(out) >= limit:
                break
            if upto is not None and s.first > upto:
                continue
            t = self._read(s, floor, ["id", "kafka_offset"])
            if upto is not None and s.last > upto:
                t = t.filter(pc.less_equal(t["kafka_offset"], upto))
            out.extend(reversed(t.column("id").to_pylist()))
        return out[:limit]

    # --- upkeep -----------------------------------------------------------------------------

    def apply_retention(self, days: float, now: float | None = None) -> list[str]:
        """Delete whole day partitions older than ``days`` (by the UTC day the segments were
        written); returns the directories deleted."""
        if days <= 0:
            raise ValueError(f"retention must be > 0 days, got {days!r} (AGENTFLUX_RETENTION_DAYS)")
        cutoff = time.strftime("%Y-%m-%d", time.gmtime((now or time.time()) - days * 86400))
        gone = []
        for t in TABLES:
            sel = pafs.FileSelector(self.table_dir(t), allow_not_found=True)
            for info in self.fs.get_file_info(sel):
                name = info.base_name
                if info.type == pafs.FileType.Directory and name.startswith("day=") \
                        and name.removeprefix("day=") < cutoff:
                    self.fs.delete_dir(info.path)
                    gone.append(info.path)
        return gone

    def compact(self, table: Table, *, partitions: Iterable[int] | None = None,
                min_files: int = 16, target_rows: int = 2_000_000, grace_s: float = 120.0,
                settle_s: float = 300.0, now: float | None = None) -> dict[str, int]:
        """Merge runs of small segments of one (day, log, partition) into one segment, and
        delete what merged segments hide once ``grace_s`` has passed.

        Per day and partition, one run of consecutive segments is merged per call, chosen by
        size tier (:meth:`_run`: at least ``min_files`` segments of similar size). The merged
        segment holds exactly the run's visible rows, named by the run's first and last
        offsets, so it covers the run and hides it in one rename. A day and partition that got no
        new segment for ``settle_s`` (yesterday's, or a quiet one) is merged whole, whatever the
        tiers, into as few segments as ``target_rows`` allows.
        Hidden segments (and temporary files left by a crash) are deleted once they are
        ``grace_s`` older than their cover: a query that listed them just before still reads
        them. Returns counts: merged segments written, segments merged, files deleted."""
        now = time.time() if now is None else now
        stats = {"written": 0, "merged": 0, "deleted": 0}
        want = set(partitions) if partitions is not None else None
        segs = self.segments(table.name, partitions=want)
        floors = with_floors(segs)
        by_day: dict[tuple, list[tuple[Segment, int]]] = {}
        for s, floor in floors:
            by_day.setdefault((s.day, s.log, s.partition), []).append((s, floor))
        for (day, log, partition), items in sorted(by_day.items()):
            visible = [(s, f) for s, f in items if f < s.last]
            if len(visible) < min_files:
                continue  # no run possible: skip reading footers (a GET each on object stores)
            rows = {s.path: self._rows(s) for s, _ in visible}
            # merge until no run is left: a pass that merged only the newest small segments
            # would let the merged ones pile up
            settled = now - max(s.mtime for s, _ in visible) >= settle_s
            while run := self._run(visible, rows, min_files, target_rows, settled):
                merged = self._merge(table, run, log=log, partition=partition, day=day)
                rows[merged.path] = sum(rows[s.path] for s, _ in run)  # (at most)
                i = visible.index(run[0])
                visible[i:i + len(run)] = [(merged, run[0][1])]
                stats["written"] += 1
                stats["merged"] += len(run)
        stats["deleted"] = self._collect(table.name, want, now, grace_s)
        return stats

    def _merge(self, table: Table, run: list, *, log: str, partition: int,
               day: str) -> Segment:
        """Write ``run``'s visible rows as one segment, streaming: a batch of at most
        ``MERGE_BATCH_ROWS`` rows in memory at a time, however large the run (up to
        ``target_rows``)."""
        first, last = run[0][0].first, run[-1][0].last
        path = (f"{self.table_dir(table.name)}/day={day}/"
                f"{segment_name(log, partition, first, last)}")
        schema = table.schema.with_metadata({
            "agentflux.log": log, "agentflux.partition": str(partition),
            "agentflux.first": str(first), "agentflux.last": str(last)})

        def write(out: Any) -> None:
            with pq.ParquetWriter(out, schema, **PARQUET_OPTIONS) as w:
                for s, floor in run:
                    source = pq.ParquetFile(s.path, filesystem=self.fs)
                    for batch in source.iter_batches(batch_size=MERGE_BATCH_ROWS):
                        t = pa.Table.from_batches([batch])
                        if floor >= s.first:
                            t = t.filter(pc.greater(t["kafka_offset"], floor))
                        w.write_table(t.cast(table.schema).replace_schema_metadata(
                            schema.metadata))
        self._publish_stream(path, write)
        return dataclasses.replace(run[0][0], last=last, path=path, mtime=time.time())

    def _rows(self, s: Segment) -> int:
        return pq.ParquetFile(s.path, filesystem=self.fs).metadata.num_rows

    @staticmethod
    def _run(visible: list, rows_of: dict[str, int], min_files: int, target_rows: int,
             settled: bool = False) -> list:
        """The run to merge next (in visibility order; ``rows_of`` gives row counts), or [].

        Size-tiered, so that a row is rewritten about log_F(target / segment) times (F =
        ``min_files``) however long the day: a segment's tier is floor(log_F(rows)); segments of
        ``target_rows / 2`` rows or more are final. For the lowest tier t that has one, the run
        is the first stretch of consecutive non-final segments of tiers <= t holding at least
        ``min_files`` segments of tier t (smaller ones in it are absorbed), cut where it would
        exceed ``target_rows`` (a cut run merges into a final segment). Merging the growing
        newest segment with every new small one instead rewrote it on each pass: a day of
        1-second segments rewrote each row ~50 times before it reached the target."""
        base = max(2, min_files)

        def tier(r: int) -> int:
            return int(math.log(max(r, 1), base) + 1e-9)

        final = max(1, target_rows // 2)
        tiers = sorted({tier(rows_of[s.path]) for s, _ in visible
                        if rows_of[s.path] < final}) if not settled else [math.inf]
        for t in tiers:
            run: list = []
            rows = count = 0
            for s, f in [*visible, (None, None)]:  # a sentinel closes the last stretch
                r = rows_of[s.path] if s is not None else final
                cut = run and rows + r > target_rows
                if r >= final or tier(r) > t or cut:
                    if len(run) >= 2 and (count >= min_files or cut or settled):
                        return run
                    run, rows, count = [], 0, 0
                    if r >= final or tier(r) > t:
                        continue
                run.append((s, f))
                rows += r
                count += tier(r) == t
        return []

    def _collect(self, table: str, partitions: set | None, now: float, grace_s: float) -> int:
        deleted = 0
        segs = self.segments(table, partitions=partitions)
        for s, floor in with_floors(segs):
            if floor < s.last:
                continue  # visible (at least partly)
            covers = [c for c in segs if c.group == s.group and c.path != s.path
                      and c.first <= s.first and c.last >= s.last]
            # a hidden segment always has a cover: the segment that set its floor
            if covers and all(now - c.mtime >= grace_s for c in covers):
                self._delete(s.path)
                deleted += 1
        for info in self._list(self.table_dir(table)):
            if info.base_name.endswith(TMP_SUFFIX) and info.mtime \
                    and now - info.mtime.timestamp() >= grace_s:
                self._delete(info.path)
                deleted += 1
        return deleted

    def _delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass  # another compactor (a previous owner) got there first
