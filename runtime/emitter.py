"""The Emitter: how an agent runtime publishes events to Kafka without waiting for Kafka.

``emit()`` is thread-safe, never touches the disk and costs well under a microsecond: it
appends the event to a bounded in-memory buffer. It never blocks, with one bounded exception:
with a spool, when the buffer is full (a burst faster than the background thread drains), it
waits at most ``max_block_ms`` (default 50 ms) for the thread to spill to disk, instead of
dropping the event. A background thread runs its
own asyncio loop with an idempotent aiokafka producer (acks=all): every ``linger_ms`` it drains
the buffer, serialises the events with orjson, groups them by the partition of their session
(Kafka's murmur2 partitioner, so a session stays ordered and lands where a keyed single-event
record would), and sends each group as one record holding a JSON array of up to
``batch_events`` events. At most one record per partition is in flight at a time (the
producer also sends one batch per partition at a time), so a record that has to be sent again
is never overtaken by a newer one: per-session order holds across retries, outages and
restarts.

Serialising in the background (as OpenTelemetry's BatchSpanProcessor exports in the background)
keeps the caller's cost flat; the contract that comes with it: do not mutate an event dict after
passing it to ``emit()``.

Accounting. Every event offered to ``emit()`` is counted in ``stats().emitted`` and, at every
moment, in exactly one of

* ``acked``: the broker acknowledged it (acks=all);
* ``failed``: it can never be delivered (cannot be serialised, too large for a record, not
  authorised); logged;
* ``dropped``: refused because the memory buffer was full (the caller emits faster than the
  emitter drains, even to the spool), the spool was full or could not be written, it was
  emitted after ``close()``, or ``close()`` left it behind without a spool; logged;
* ``pending`` = ``buffered`` (only in memory) + ``in_flight`` (sent, not yet acknowledged) +
  ``spooled`` (in the spool on disk, not yet sent).

so ``emitted + recovered == acked + failed + dropped + pending`` holds for every
``stats()`` snapshot (``recovered``: events a previous emitter left in the spool, found by
this one). ``stats().adds_up`` checks it.

Broker outages and the spool. The producer retries a record it sent until it is acknowledged
(idempotent: a retry after a lost response is not written twice). When a record stays
unacknowledged for ``spill_after_ms`` (the broker is down or stuck), or the memory buffer is
half full, the background thread spills what it holds to an optional spool directory
(``spool_dir`` or ``AGENTFLUX_SPOOL_DIR``; bound ``spool_max_bytes`` or
``AGENTFLUX_SPOOL_MAX_BYTES``, default 256 MiB; beyond it events are dropped and counted). After
recovery the spool is delivered before any newer event. ``close()`` with the broker down returns
within its timeout and writes everything it still holds to the spool (in order, ahead of what
is there); a new Emitter on the same directory delivers it. Without a spool, what ``close()``
leaves behind is counted as dropped and logged.

Spool format: segment files ``<seq>.spool`` (12 digits), each starting with the 8 bytes
``AFSPOOL1``, then records ``<u32 body length><u32 crc32(body)><body>`` (little endian),
``body = <u16 key length><session id, UTF-8><event, UTF-8 JSON>``. Files are append-only and
deleted only when every event in them is acknowledged (or failed for good). A torn or corrupt
record (a crash in the middle of a write) ends its segment: it is cut off, counted in
``stats().spool_torn`` and logged; everything before it is delivered. fsync policy: a segment is
fsynced when it is sealed, when ``close()`` rewrites the spool's head (before the segments it
replaces are deleted), and otherwise at most every ``spool_fsync_s`` (default 1 s) while
spilling: a process crash (kill -9) loses nothing the spool wrote, only what was in memory (the
emit buffer, which an outage spills within ``spill_after_ms``, and about three records per
partition); a power failure can also lose the last second of spilled events. One emitter at a
time owns a spool directory (an flock on ``.lock``); the directory is created 0700, files 0600.

Delivery is exactly once per event except in these corners, where it is at least once: a
record in flight when ``close()`` gave up on an unreachable broker, when the producer had to be
replaced (a fatal producer error), or that the producer gave up on after an outage longer than
``send_timeout_s`` is sent again later; if the broker had in fact written it before going
away, it appears twice. The event ``id`` (UUIDv7) is the idempotency key for consumers.

Async runtimes use the same object: ``emit()`` is safe on an event loop, and ``await
emitter.aflush()`` / ``await emitter.aclose()`` wait without blocking the loop.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import itertools
import logging
import os
import random
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import orjson

from agentflux.config import ConfigError, Settings
from agentflux.schemas.events import Event
from agentflux.schemas.wire import encode_batch, envelope
from agentflux.schemas.sketch import DDSketch

log = logging.getLogger(__name__)

DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
MIN_SPOOL_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class EmitterStats:
    emitted: int  # every event offered to emit()
    sent: int  # handed to the producer (an event sent again counts again)
    acked: int  # acknowledged by the broker (acks=all)
    failed: int  # can never be delivered (unserialisable, too large, not authorised)
    dropped: int  # buffer full without a spool, spool full, emitted after close, left by close()
    buffered: int  # only in memory (lost if the process dies), not yet handed to the producer
    records: int  # records sent
    ack_p50_ms: float | None  # write-to-ack latency of events delivered without the spool
    ack_p99_ms: float | None
    in_flight: int = 0  # handed to the producer, not yet acknowledged
    spooled: int = 0  # in the spool on disk, not yet handed to the producer
    pending: int = 0  # buffered + in_flight + spooled
    recovered: int = 0  # found in the spool when this emitter opened it (a previous run's)
    spool_bytes: int = 0  # size of the spool's files
    spool_torn: int = 0  # torn / corrupt spool records cut off when the spool was read

    @property
    def adds_up(self) -> bool:
        """``emitted + recovered == acked + failed + dropped + pending``, nothing negative."""
        parts = (self.acked, self.failed, self.dropped, self.buffered, self.in_flight,
                 self.spooled, self.recovered)
        return (min(parts) >= 0 and self.pending == self.buffered + self.in_flight + self.spooled
                and self.emitted + self.recovered
                == self.acked + self.failed + self.dropped + self.pending)


# --- the spool --------------------------------------------------------------------------------

_MAGIC = b"AFSPOOL1"
_HEAD = struct.Struct("<II")  # body length, crc32(body)
_KEYLEN = struct.Struct("<H")
_SUFFIX = ".spool"


class _Segment:
    __slots__ = ("seq", "path", "size", "events", "read", "read_off", "outstanding", "sealed")

    def __init__(self, seq: int, path: Path, size: int, events: int, sealed: bool):
        self.seq, self.path, self.size, self.events, self.sealed = seq, path, size, events, sealed
        self.read = 0  # events handed out by read()
        self.read_off = len(_MAGIC)
        self.outstanding = 0  # handed out and not yet resolved (acked, failed or re-spooled)


def _encode(items: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    out = []
    pack_key, pack_head, crc = _KEYLEN.pack, _HEAD.pack, zlib.crc32
    for key, data in items:
        body = pack_key(len(key)) + key + data
        out.append(pack_head(len(body), crc(body)) + body)
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Append-only segment files of serialised events (format in the module docstring).

    Used by one thread at a time (the emitter's background thread, or the caller of
    ``Emitter.close()`` when the emitter never started). ``read()`` hands events out in the
    order they were appended; ``resolved()`` says they need not be kept any more; a segment
    file is deleted when it is sealed, fully read and every event it handed out is resolved.
    """

    def __init__(self, directory: str | os.PathLike, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
                 segment_bytes: int | None = None, fsync_interval_s: float = 1.0):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(MIN_SPOOL_MAX_BYTES,
                                                  min(16 * 1024 * 1024, max_bytes // 8))
        self.fsync_interval_s = fsync_interval_s
        self.unread = 0  # events appended and not yet handed out by read()
        self.bytes = 0  # size of all segment files
        self.torn = 0  # torn or corrupt records cut off
        self.is_open = False
        self._segs: collections.deque[_Segment] = collections.deque()
        self._wfd: int | None = None  # the last segment, while it is being appended to
        self._rseg: _Segment | None = None
        self._rfd: int | None = None
        self._rbuf = b""
        self._rbuf_off = 0
        self._lock_fd: int | None = None
        self._next_seq = 1
        self._dirty = False
        self._synced_at = time.monotonic()

    # --- opening: lock, scan, cut off torn tails ---------------------------------------------
    def open(self) -> int:
        """Lock the directory and scan what a previous emitter left; returns its event count."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot use the spool directory {self.dir} ({exc.strerror}): "
                              "set AGENTFLUX_SPOOL_DIR to a writable directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"the spool directory {self.dir} is in use by another emitter: give "
                              "each emitter its own AGENTFLUX_SPOOL_DIR") from None
        self._lock_fd = fd
        (self.dir / ".head.tmp").unlink(missing_ok=True)
        paths = []
        for path in self.dir.glob("*" + _SUFFIX):
            if path.stem.isdigit():
                paths.append((int(path.stem), path))
        found = 0
        for seq, path in sorted(paths):
            n = self._scan(path)
            self._next_seq = max(self._next_seq, seq + 1)
            if n is None:
                continue
            seg = _Segment(seq, path, path.stat().st_size, n, sealed=True)
            self._segs.append(seg)
            self.bytes += seg.size
            found += n
            self._maybe_delete(seg)  # an empty segment
        self.unread = found
        self.is_open = True
        return found

    def _scan(self, path: Path) -> int | None:
        """Count the intact records of a segment; cut off a torn or corrupt tail."""
        data = path.read_bytes()
        if data[:len(_MAGIC)] != _MAGIC:
            if len(data) < len(_MAGIC) and _MAGIC.startswith(data):  # torn while being created
                path.unlink()
                self.torn += bool(data)
                return None
            bad = path.with_suffix(".corrupt")
            path.rename(bad)
            self.torn += 1
            log.error("agentflux emitter: %s is not a spool segment; moved aside to %s", path, bad)
            return None
        off, n, end = len(_MAGIC), 0, len(data)
        view = memoryview(data)
        while off < end:
            if off + _HEAD.size > end:
                break
            length, crc = _HEAD.unpack_from(data, off)
            stop = off + _HEAD.size + length
            if length < _KEYLEN.size or stop > end:
                break
            body = view[off + _HEAD.size:stop]
            if zlib.crc32(body) != crc or _KEYLEN.unpack_from(body)[0] > length - _KEYLEN.size:
                break
            n += 1
            off = stop
        if off < end:
            self.torn += 1
            log.warning("agentflux emitter: spool segment %s has a torn or corrupt record at byte "
                        "%d; cut off %d bytes (the %d records before it are kept)", path, off,
                        end - off, n)
            os.truncate(path, off)
        return n

    # --- writing ------------------------------------------------------------------------------
    def _writable(self) -> _Segment:
        seg = self._segs[-1] if self._segs else None
        if seg is not None and not seg.sealed and self._wfd is not None \
                and seg.size < self.segment_bytes:
            return seg
        self._seal_writer()
        seq = self._next_seq
        self._next_seq += 1
        path = self.dir / f"{seq:012d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        _write_all(fd, _MAGIC)
        _fsync_dir(self.dir)
        self._wfd = fd
        seg = _Segment(seq, path, len(_MAGIC), 0, sealed=False)
        self._segs.append(seg)
        self.bytes += seg.size
        return seg

    def append(self, items: list[tuple[bytes, bytes]]) -> int:
        """Append (key, event JSON) pairs in order, as many as the bound allows: a prefix.
        Returns how many were written; the caller counts the rest as dropped."""
        recs = _encode(items)
        room = self.max_bytes - self.bytes
        take = 0
        for rec in recs:
            if len(rec) > room:
                break
            room -= len(rec)
            take += 1
        i = 0
        while i < take:
            seg = self._writable()
            space = self.segment_bytes - seg.size
            j, size = i, 0
            while j < take and (j == i or size + len(recs[j]) <= space):
                size += len(recs[j])
                j += 1
            _write_all(self._wfd, b"".join(recs[i:j]))
            seg.size += size
            seg.events += j - i
            self.bytes += size
            self.unread += j - i
            self._dirty = True
            i = j
        return take

    def sync(self) -> None:
        if self._wfd is not None and self._dirty:
            os.fsync(self._wfd)
        self._dirty = False
        self._synced_at = time.monotonic()

    def maybe_sync(self, now: float) -> None:
        if self._dirty and now - self._synced_at >= self.fsync_interval_s:
            self.sync()

    def _seal_writer(self) -> None:
        if self._wfd is not None:
            self.sync()
            os.close(self._wfd)
            self._wfd = None
        if self._segs and not self._segs[-1].sealed:
            seg = self._segs[-1]
            seg.sealed = True
            self._maybe_delete(seg)

    def seal_if_drained(self) -> None:
        """Everything appended was read back: later appends start a new segment, and this one
        goes once its events are resolved."""
        if self.unread == 0:
            self._seal_writer()

    # --- reading ------------------------------------------------------------------------------
    def read(self, limit: int) -> tuple[list[tuple[str, bytes, _Segment]], int]:
        """Up to ``limit`` (session id, event JSON, segment) in append order, and how many
        events were lost to a record found corrupt (the rest of its segment)."""
        out: list[tuple[str, bytes, _Segment]] = []
        lost = 0
        while len(out) < limit and self.unread > 0:
            seg = self._rseg
            if seg is None or seg.read >= seg.events:
                seg = next((s for s in self._segs if s.read < s.events), None)
                if seg is None:
                    break
                self._open_reader(seg)
            rec = self._record(seg)
            if rec is None:  # corrupt on disk since it was written or scanned
                left = seg.events - seg.read
                log.error("agentflux emitter: spool segment %s is corrupt at byte %d: %d events "
                          "lost", seg.path, seg.read_off, left)
                self.torn += 1
                lost += left
                self.unread -= left
                seg.events = seg.read
                self._maybe_delete(seg)
                continue
            sid, data, size = rec
            seg.read += 1
            seg.read_off += size
            seg.outstanding += 1
            self.unread -= 1
            out.append((sid, data, seg))
        return out, lost

    def _open_reader(self, seg: _Segment) -> None:
        self._close_reader()
        self._rfd = os.open(seg.path, os.O_RDONLY)
        self._rseg = seg
        self._rbuf, self._rbuf_off = b"", seg.read_off

    def _close_reader(self) -> None:
        if self._rfd is not None:
            os.close(self._rfd)
        self._rfd, self._rseg, self._rbuf = None, None, b""

    def _fill(self, off: int, need: int) -> None:
        self._rbuf = os.pread(self._rfd, max(need, 1 << 20), off)
        self._rbuf_off = off

    def _record(self, seg: _Segment) -> tuple[str, bytes, int] | None:
        rel = seg.read_off - self._rbuf_off
        if rel < 0 or rel + _HEAD.size > len(self._rbuf):
            self._fill(seg.read_off, _HEAD.size)
            rel = 0
            if len(self._rbuf) < _HEAD.size:
                return None
        length, crc = _HEAD.unpack_from(self._rbuf, rel)
        size = _HEAD.size + length
        if rel + size > len(self._rbuf):
            self._fill(seg.read_off, size)
            rel = 0
            if len(self._rbuf) < size:
                return None
        body = self._rbuf[rel + _HEAD.size:rel + size]
        if length < _KEYLEN.size or zlib.crc32(body) != crc:
            return None
        klen = _KEYLEN.unpack_from(body)[0]
        if klen > length - _KEYLEN.size:
            return None
        return body[2:2 + klen].decode(), body[2 + klen:], size

    # --- resolving and deleting ---------------------------------------------------------------
    def resolved(self, seg: _Segment, n: int) -> None:
        seg.outstanding -= n
        self._maybe_delete(seg)

    def _maybe_delete(self, seg: _Segment) -> None:
        if not (seg.sealed and seg.read >= seg.events and seg.outstanding <= 0):
            return
        if self._rseg is seg:
            self._close_reader()
        seg.path.unlink(missing_ok=True)
        try:
            self._segs.remove(seg)
        except ValueError:
            return
        self.bytes -= seg.size

    def rewrite_head(self, items: list[tuple[bytes, bytes]]) -> None:
        """Put ``items`` (events handed out and not resolved, oldest first) back in front of
        everything not yet read, and forget the segments they were read from.

        The first segment with unread events is rewritten as [items + its unread rest] through
        a temporary file and an atomic rename; the fully read segments before it are deleted
        after that. A crash in between leaves a copy of some events in both: delivered twice,
        never lost. Not bounded by ``max_bytes`` (these events were already counted pending).
        """
        if not items:
            return
        self._seal_writer()
        first = next((s for s in self._segs if s.read < s.events), None)
        rest = b""
        if first is not None:
            fd = os.open(first.path, os.O_RDONLY)
            try:
                rest = os.pread(fd, first.size - first.read_off, first.read_off)
            finally:
                os.close(fd)
        body = b"".join(_encode(items))
        tmp = self.dir / ".head.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, _MAGIC + body + rest)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._close_reader()
        if first is not None:
            os.replace(tmp, first.path)
            self.bytes += len(_MAGIC) + len(body) + len(rest) - first.size
            first.size = len(_MAGIC) + len(body) + len(rest)
            first.events = len(items) + first.events - first.read
            first.read, first.read_off, first.outstanding = 0, len(_MAGIC), 0
            keep = first
        else:
            seq = self._next_seq
            self._next_seq += 1
            path = self.dir / f"{seq:012d}{_SUFFIX}"
            os.replace(tmp, path)
            keep = _Segment(seq, path, len(_MAGIC) + len(body), len(items), sealed=True)
            self._segs.append(keep)
            self.bytes += keep.size
        _fsync_dir(self.dir)
        for seg in list(self._segs):
            if seg is keep:
                break
            seg.outstanding = 0
            self._maybe_delete(seg)
        if first is None:  # every older segment was fully read: all of them are in ``items``
            for seg in list(self._segs):
                if seg is not keep:
                    seg.outstanding = 0
                    self._maybe_delete(seg)
        self.unread += len(items)

    def segments(self) -> list[Path]:
        return [s.path for s in self._segs]

    def close(self) -> None:
        if not self.is_open:
            return
        try:
            self._seal_writer()
            self._close_reader()
            _fsync_dir(self.dir)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
            self.is_open = False


# --- the emitter ------------------------------------------------------------------------------

class _Rec:
    """One record: events of one partition, sent together."""

    __slots__ = ("p", "key", "items", "n_spool", "value", "sent_at", "attempts", "retry_at", "task")

    def __init__(self, p: int, items: list):
        self.p = p
        self.items = items  # (session id, event JSON, emit time ns or 0, spool segment or None)
        self.n_spool = sum(1 for it in items if it[3] is not None)  # of them on disk too
        self.key = items[0][0].encode()
        self.value = encode_batch([it[1] for it in items])
        self.sent_at = 0.0
        self.attempts = 0
        self.retry_at = 0.0
        self.task: asyncio.Task | None = None


def _classify(exc: BaseException) -> str:
    """"retry" (the broker is unreachable or busy), "reset" (the producer is unusable: retry
    with a new one) or "fail" (this record can never be delivered)."""
    from aiokafka import errors as E
    if isinstance(exc, (E.OutOfOrderSequenceNumber, E.ProducerFenced, E.InvalidProducerEpoch,
                        E.InvalidProducerIdMapping, E.ProducerClosed, E.IllegalStateError)):
        return "reset"
    if isinstance(exc, E.KafkaError):
        return "retry" if exc.retriable or isinstance(
            exc, (E.KafkaTimeoutError, E.KafkaConnectionError)) else "fail"
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError, OSError)):
        return "retry"
    return "fail"


def _backoff(attempts: int) -> float:
    return min(5.0, 0.1 * 2 ** min(attempts, 6)) * random.uniform(0.5, 1.0)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number of bytes") from None


class Emitter:
    """Publishes events in batch records. See the module docstring for the guarantees.

    ``spool_dir``: where to spill when the broker is unreachable (default: the environment
    variable ``AGENTFLUX_SPOOL_DIR``; ``""`` for none). ``spool_max_bytes``: its bound (default
    ``AGENTFLUX_SPOOL_MAX_BYTES``, else 256 MiB). ``spill_after_ms``: how long a record may
    wait for its acknowledgement before the emitter treats the broker as unreachable.
    Memory: at most ``buffer_events`` events in the emit buffer plus about three records
    (``batch_events`` each) per partition being batched or in flight.
    """

    def __init__(self, settings: Settings | None = None, *, topic: str | None = None,
                 linger_ms: float = 2.0, batch_events: int = 1000,
                 max_record_bytes: int = 900_000, buffer_events: int = 200_000,
                 send_timeout_s: float = 30.0, runtime: str = "agentflux",
                 producer_factory: Callable[..., Any] | None = None,
                 spool_dir: str | os.PathLike | None = None, spool_max_bytes: int | None = None,
                 spill_after_ms: float = 1000.0, spool_fsync_s: float = 1.0,
                 max_block_ms: float = 50.0):
        if linger_ms < 0:
            raise ValueError(f"linger_ms must be >= 0, got {linger_ms!r}")
        if batch_events < 1:
            raise ValueError(f"batch_events must be >= 1, got {batch_events!r}")
        if buffer_events < batch_events:
            raise ValueError(f"buffer_events ({buffer_events}) must be >= batch_events ({batch_events})")
        if spill_after_ms <= 0:
            raise ValueError(f"spill_after_ms must be > 0, got {spill_after_ms!r}")
        if max_block_ms < 0:
            raise ValueError(f"max_block_ms must be >= 0, got {max_block_ms!r}")
        self.settings = settings or Settings()
        self.topic = topic or self.settings.topics.events
        self.linger_s = linger_ms / 1000.0
        self.batch_events = batch_events
        self.max_record_bytes = max_record_bytes
        self.buffer_events = buffer_events
        self.send_timeout_s = send_timeout_s
        self.spill_after_s = spill_after_ms / 1000.0
        self.max_block_s = max_block_ms / 1000.0
        self.source = {"runtime": runtime, "host": socket.gethostname(), "pid": os.getpid()}
        self._producer_factory = producer_factory
        if spool_dir is None:
            spool_dir = os.environ.get("AGENTFLUX_SPOOL_DIR", "")
        if spool_max_bytes is None:
            spool_max_bytes = _env_int("AGENTFLUX_SPOOL_MAX_BYTES") or DEFAULT_SPOOL_MAX_BYTES
        if spool_max_bytes < MIN_SPOOL_MAX_BYTES:
            raise ConfigError(f"spool_max_bytes={spool_max_bytes}: the spool bound must be at least "
                              f"{MIN_SPOOL_MAX_BYTES} bytes (AGENTFLUX_SPOOL_MAX_BYTES)")
        self.spool_dir = Path(spool_dir) if str(spool_dir) else None
        self._spool = (Spool(self.spool_dir, spool_max_bytes, fsync_interval_s=spool_fsync_s)
                       if self.spool_dir is not None else None)
        # the caller's side: emit() touches only these
        self._buf: collections.deque = collections.deque()
        self._emitted = itertools.count()  # next() is atomic in CPython: exact under threads
        self._dropped = itertools.count()  # refused by emit()
        self._closed = False
        self._room = threading.Condition(threading.Lock())  # emit() waiting for a spill
        self._room_waiters = 0
        self._room_stuck = False  # a wait timed out: drop at once until the thread drains
        # counters moved by the background thread, always under self._cond (see stats())
        self._cond = threading.Condition()
        self._taken = 0  # popped off the emit buffer
        self._queued = 0  # only in memory after the emit buffer: per-partition queues, retries
        self._inflight_n = 0
        self._spooled = 0
        self._sent = self._acked = self._failed = self._records = 0
        self._dropped_bg = 0
        self._dropped_at_close = 0
        self._recovered = 0
        self._ack_sketch = DDSketch()
        # the background thread's state
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: Any = None
        self._connecting = False
        self._reconnect_at = 0.0
        self._connect_attempts = 0
        self._producer_closing = False
        self._stopping = False  # close() was called: deliver what is left, then stop
        self._abort = False  # close() gives up: spool (or drop) what is left, now
        self._stalled = False
        self._latched = False  # stalled until an acknowledgement says the broker is back
        self._last_ack_at = 0.0  # monotonic time of the last acknowledgement
        self._spool_counted = False  # what the spool held when first opened is counted
        self._close_deadline = float("inf")
        self._close_ok = True
        self._partitions: list[int] = []
        self._part_cache: dict[str, int] = {}
        self._queues: dict[int, collections.deque] = {}
        self._queue_limit = 2 * batch_events
        self._inflight: dict[int, _Rec] = {}
        self._retry: dict[int, _Rec] = {}
        self._warned: dict[str, float] = {}
        self._error: BaseException | None = None

    # --- building events ------------------------------------------------------------------
    def event(self, type: str, attrs: Mapping[str, Any], *, agent_id: str, session_id: str,
              philosophy: str, ts: int | None = None, trace_id: str | None = None,
              span_id: str | None = None, parent_span_id: str | None = None) -> dict:
        """A wire-form event with a fresh UUIDv7 id, the current time and this emitter's source
        (built by :func:`agentflux.schemas.wire.envelope`; ``attrs`` is copied). Raises
        ``ValueError`` for an unknown type."""
        return envelope(type, dict(attrs), source=self.source, agent_id=agent_id,
                        session_id=session_id, philosophy=philosophy, ts=ts, trace_id=trace_id,
                        span_id=span_id, parent_span_id=parent_span_id)

    # --- the hot path ---------------------------------------------------------------------
    def emit(self, event: Mapping[str, Any] | Event) -> bool:
        """Queue one event (wire-form dict or :class:`Event`). False if it was dropped (counted)."""
        if type(event) is not dict:
            event = event.to_dict() if isinstance(event, Event) else dict(event)
        next(self._emitted)
        if self._closed or (len(self._buf) >= self.buffer_events and not self._wait_for_room()):
            next(self._dropped)
            return False
        self._buf.append((event, time.perf_counter_ns()))
        return True

    def _wait_for_room(self) -> bool:
        """The buffer is full. With a spool and the background thread running, wait (at most
        ``max_block_ms``) for it to spill; without, or if it made no room last time: drop."""
        if self._spool is None or self.max_block_s <= 0 or self._room_stuck or self._stopping:
            return False
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        deadline = time.monotonic() + self.max_block_s
        with self._room:
            self._room_waiters += 1
            try:
                while len(self._buf) >= self.buffer_events:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed:
                        self._room_stuck = True
                        return False
                    self._room.wait(left)
            finally:
                self._room_waiters -= 1
        return True

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 15.0) -> "Emitter":
        """Open the spool (if any) and connect the producer on a background thread; returns
        when it is ready, or raises ConfigError within ``timeout_s``."""
        if self._thread is not None:
            return self
        if self._closed:
            raise RuntimeError("this Emitter is closed")
        self._open_spool()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="agentflux-emitter",
                                        daemon=True)
        self._thread.start()
        servers = self.settings.bootstrap_servers
        if not ready.wait(timeout_s):
            self._stopping = self._abort = True
            raise ConfigError(f"could not connect to Kafka at {servers} within {timeout_s:g} s: is "
                              "the broker up (`agentflux up`) and KAFKA_BOOTSTRAP_SERVERS right?")
        if isinstance(self._error, ConfigError):  # explained by the preflight probe: one line
            raise ConfigError(f"could not start the Kafka producer: {self._error}") from None
        if self._error is not None:
            raise ConfigError(f"could not start the Kafka producer for {servers} "
                              f"(KAFKA_BOOTSTRAP_SERVERS): {self._error!r}; is the broker up "
                              "(`agentflux up`)?") from self._error
        return self

    def flush(self, timeout_s: float | None = 30.0) -> bool:
        """Wait until as many events as were emitted before this call are acked, failed or
        dropped (spooled events count as not yet delivered). False at the deadline."""
        target = self._count(self._emitted)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while (self._acked + self._failed + self._dropped_bg + self._count(self._dropped)
                   < target + self._recovered):
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(0.1 if remaining is None else min(remaining, 0.1))
        return True

    def close(self, timeout_s: float = 30.0) -> bool:
        """Deliver what is left, bounded by ``timeout_s``, and stop. Whatever is still not
        delivered then is written to the spool (or, without one, counted as dropped and
        logged); with the broker unreachable this happens as soon as that is clear. True if
        nothing was left behind. Events emitted afterwards are dropped (counted)."""
        if self._closed:
            return self._close_ok
        self._closed = True
        begun = time.monotonic()
        deadline = begun + max(0.0, timeout_s)
        thread = self._thread
        try:
            if thread is not None and thread.is_alive() and not self._abort:
                self._close_deadline = deadline
                self._stopping = True
                reserve = min(2.0, 0.3 * timeout_s)  # for spooling and stopping the producer
                # with a spool, stop waiting once the broker is evidently unreachable: the
                # emitter treats it so, and nothing was acknowledged for a while since close()
                quiet = max(2 * self.spill_after_s, 1.0)
                with self._cond:
                    while thread.is_alive():
                        now = time.monotonic()
                        left = deadline - reserve - now
                        if left <= 0:
                            break
                        if (self._spool is not None and self._stalled
                                and now - max(self._last_ack_at, begun) >= quiet):
                            break
                        self._cond.wait(min(left, 0.05))
        finally:
            self._abort = True
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
            if thread is None or not thread.is_alive():
                self._close_offline(started=thread is not None)
        st = self.stats()
        self._close_ok = st.pending == 0 and self._dropped_at_close == 0
        return self._close_ok

    async def aflush(self, timeout_s: float | None = 30.0) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout_s)

    async def aclose(self, timeout_s: float = 30.0) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.close, timeout_s)

    async def __aenter__(self) -> "Emitter":
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __enter__(self) -> "Emitter":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- counters -------------------------------------------------------------------------
    @staticmethod
    def _count(counter: itertools.count) -> int:
        # how many times next() was called, without calling it: repr is "count(N)". CPython's
        # itertools.count increments atomically, which a ``self.n += 1`` under threads does not.
        return int(repr(counter)[6:-1])

    def stats(self) -> EmitterStats:
        """A consistent snapshot: ``emitted + recovered == acked + failed + dropped + pending``."""
        with self._cond:
            # Read order matters: taken (frozen under the lock), then emit()'s drops, then
            # emit()'s count. emit() counts an event before it drops or appends it, so an event
            # between the two is still "in the buffer" and nothing goes negative.
            taken = self._taken
            dropped_emit = self._count(self._dropped)
            emitted = self._count(self._emitted)
            buffered = emitted - dropped_emit - taken + self._queued
            s = self._ack_sketch
            spool = self._spool
            return EmitterStats(
                emitted=emitted, sent=self._sent, acked=self._acked, failed=self._failed,
                dropped=dropped_emit + self._dropped_bg, buffered=buffered, records=self._records,
                ack_p50_ms=s.quantile(0.5) if s.count else None,
                ack_p99_ms=s.quantile(0.99) if s.count else None,
                in_flight=self._inflight_n, spooled=self._spooled,
                pending=buffered + self._inflight_n + self._spooled, recovered=self._recovered,
                spool_bytes=spool.bytes if spool is not None else 0,
                spool_torn=spool.torn if spool is not None else 0)

    def _warn(self, key: str, msg: str, *args: Any, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= 5.0:  # at most one line per kind per 5 s
            self._warned[key] = now
            log.log(level, msg, *args)

    # --- the spool, from the caller's thread (start / close) --------------------------------
    def _open_spool(self) -> None:
        spool = self._spool
        if spool is None or spool.is_open:
            return
        found = spool.open()
        if self._spool_counted:  # reopened after the thread closed it: all counted already
            return
        self._spool_counted = True
        with self._cond:
            self._recovered += found
            self._spooled += found
        if found:
            log.info("agentflux emitter: %d events in the spool %s from an earlier run; they are "
                     "delivered first", found, spool.dir)

    def _close_offline(self, started: bool) -> None:
        """The background thread is not running: account for what is still in the buffer."""
        items, bad, n = self._take(len(self._buf))
        if not n:
            return
        written = 0
        if self._spool is not None and items:
            try:
                self._open_spool()
                written = self._spool.append([(it[0].encode(), it[1]) for it in items])
            except (OSError, ConfigError) as exc:
                log.error("agentflux emitter: cannot write the spool %s: %s", self.spool_dir, exc)
            finally:
                if self._spool.is_open:
                    self._spool.close()
        lost = len(items) - written
        with self._cond:
            self._taken += n
            self._failed += bad
            self._spooled += written
            self._dropped_bg += lost
            self._dropped_at_close += lost
            self._cond.notify_all()
        if written:
            log.warning("agentflux emitter: %d events not delivered are in the spool %s; an "
                        "emitter started on it delivers them", written, self.spool_dir)
        if lost:
            log.error("agentflux emitter: %d events could not be delivered and are dropped (%s)",
                      lost, "the spool failed or is full" if self._spool is not None
                      else "set AGENTFLUX_SPOOL_DIR to keep them across broker outages")

    # --- the background thread ------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:  # surfaced through start() / stats; never kills the caller
            self._error = exc
            ready.set()
            log.error("agentflux emitter stopped: %r", exc)
        finally:
            try:
                tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in tasks:
                    t.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))
            finally:
                loop.close()
                if self._spool is not None and self._spool.is_open:  # the thread owned it
                    try:
                        self._spool.close()
                    except OSError as exc:
                        log.error("agentflux emitter: closing the spool %s: %s", self.spool_dir, exc)
                if self._closed:  # e.g. a start that failed after close() stopped waiting for it
                    self._close_offline(started=True)
            with self._cond:
                self._cond.notify_all()

    def _make_producer(self) -> Any:
        kw = dict(self.settings.kafka_client_kwargs(), enable_idempotence=True, acks="all",
                  linger_ms=0, max_batch_size=self.max_record_bytes + 65536,
                  max_request_size=self.max_record_bytes + 131072,
                  request_timeout_ms=int(self.send_timeout_s * 1000), compression_type=None)
        if self._producer_factory is not None:
            return self._producer_factory(**kw)
        from aiokafka import AIOKafkaProducer
        return AIOKafkaProducer(**kw)

    async def _stop_producer(self, producer: Any, timeout_s: float) -> None:
        """Stop a producer within a bound: with the broker unreachable, aiokafka's stop() waits
        for batches that cannot be delivered, so abort its sender then."""
        task = asyncio.ensure_future(producer.stop())
        done, _ = await asyncio.wait({task}, timeout=max(0.05, timeout_s))
        if not done:
            sender_task = getattr(getattr(producer, "_sender", None), "sender_task", None)
            if sender_task is not None:
                sender_task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if not done:
                task.cancel()
                log.warning("agentflux emitter: the Kafka producer did not stop in time")
        if done and not task.cancelled() and task.exception() is not None:
            log.debug("agentflux emitter: stopping the producer: %r", task.exception())

    async def _main(self, ready: threading.Event) -> None:
        producer = self._make_producer()
        try:
            await producer.start()
            parts = await producer.partitions_for(self.topic)
            if not parts:
                raise ConfigError(f"the topic {self.topic} has no partitions")
        except BaseException as exc:
            # aiokafka says only "Unable to bootstrap": probe once more to say why (a wrong
            # password, an untrusted certificate, ...), as a ConfigError naming the setting
            if self._producer_factory is None and isinstance(exc, Exception):
                from agentflux.preflight import diagnose
                exc = await diagnose(self.settings, exc)
            self._error = exc
            ready.set()
            await self._stop_producer(producer, 2.0)
            return
        self._partitions = sorted(parts)
        self._queues = {p: collections.deque() for p in self._partitions}
        self._queue_limit = 2 * self.batch_events * len(self._partitions)
        self._producer = producer
        ready.set()
        try:
            while not self._abort:
                busy = self._tick(time.monotonic())
                if self._stopping and self._idle():
                    break
                await asyncio.sleep(0 if busy else self.linger_s)
        finally:
            await self._shutdown()

    def _idle(self) -> bool:
        return not (self._buf or self._inflight or self._retry
                    or any(self._queues.values())
                    or (self._spool is not None and self._spool.unread))

    def _partition(self, session_id: str) -> int:
        p = self._part_cache.get(session_id)
        if p is None:
            from aiokafka.partitioner import murmur2
            parts = self._partitions
            p = parts[(murmur2(session_id.encode()) & 0x7FFFFFFF) % len(parts)]
            if len(self._part_cache) > 100_000:
                self._part_cache.clear()
            self._part_cache[session_id] = p
        return p

    def _is_stalled(self, now: float) -> bool:
        """The broker is treated as unreachable: a record waits longer than ``spill_after_ms``
        for its acknowledgement, a record must be sent again, or there is no producer. It stays
        so until an acknowledgement arrives (or nothing is left in flight to wait for)."""
        if self._producer is None or self._retry:
            self._latched = True
            return True
        limit = now - self.spill_after_s
        if any(rec.sent_at < limit for rec in self._inflight.values()):
            self._latched = True
            return True
        if self._latched and self._inflight:
            return True
        self._latched = False
        return False

    def _tick(self, now: float) -> bool:
        """One round of the background loop; True if work is left for the next round."""
        if self._producer is None and not self._connecting and now >= self._reconnect_at \
                and not self._abort:
            self._connecting = True
            asyncio.ensure_future(self._reconnect())
        stalled = self._stalled = self._is_stalled(now)
        spool = self._spool
        busy = False
        if spool is not None:
            to_spool = bool(self._buf) and (stalled or spool.unread > 0
                                            or len(self._buf) * 2 >= self.buffer_events)
            # Before the spool takes the buffer (newer), the events queued only in memory go
            # there (older). So events only in memory are always the tail of their queue, and
            # during an outage nothing stays only in memory but records in flight.
            if (stalled or to_spool) and spool.unread == 0 and any(
                    q and q[-1][3] is None for q in self._queues.values()):
                self._queues_to_spool()
            if to_spool:
                busy = self._buf_to_spool()
            elif self._buf:
                busy = self._buf_to_queues()
            if not stalled and spool.unread:
                busy = self._spool_to_queues() or busy
            if spool.unread == 0:
                spool.seal_if_drained()
            spool.maybe_sync(now)
        elif self._buf:
            busy = self._buf_to_queues()
        self._send_ready(now)
        return busy

    def _take(self, limit: int) -> tuple[list, int, int]:
        """Pop up to ``limit`` events off the emit buffer and serialise them:
        (items, unserialisable, popped). Unserialisable events are logged here."""
        buf = self._buf
        popleft = buf.popleft
        dumps = orjson.dumps
        items = []
        bad = 0
        n = min(len(buf), limit)
        for _ in range(n):
            event, t = popleft()
            try:
                sid = event["session_id"]
                if type(sid) is not str:
                    raise TypeError(f"session_id is a {type(sid).__name__}, not a str")
                if len(sid) > 16384:
                    raise ValueError("session_id longer than 16384 characters")
                items.append((sid, dumps(event), t, None))
            except (TypeError, KeyError, ValueError) as exc:  # counted, never silent
                bad += 1
                self._warn("serialise", "agentflux emitter: cannot serialise an event: %r", exc)
        if n:  # room in the buffer: wake emit() calls waiting for it
            self._room_stuck = False
            if self._room_waiters:
                with self._room:
                    self._room.notify_all()
        return items, bad, n

    def _in_queues(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _buf_to_queues(self) -> bool:
        room = self._queue_limit - self._in_queues()
        if room <= 0:
            return False
        items, bad, n = self._take(min(room, 10 * self.batch_events))
        queues = self._queues
        part = self._partition
        for it in items:
            queues[part(it[0])].append(it)
        with self._cond:
            self._taken += n
            self._queued += len(items)
            self._failed += bad
            if bad:
                self._cond.notify_all()
        return bool(self._buf) and self._in_queues() < self._queue_limit

    def _buf_to_spool(self) -> bool:
        items, bad, n = self._take(10 * self.batch_events)  # short rounds: acks wait for them
        written = self._spool_append(items)
        lost = len(items) - written
        with self._cond:
            self._taken += n
            self._spooled += written
            self._dropped_bg += lost
            self._failed += bad
            if lost or bad:
                self._cond.notify_all()
        if lost:
            self._warn("spool-full", "agentflux emitter: the spool %s is full (%d bytes): %d events "
                       "dropped", self.spool_dir, self._spool.max_bytes, lost)
        return bool(self._buf)

    def _spool_append(self, items: list) -> int:
        if not items:
            return 0
        try:
            return self._spool.append([(it[0].encode(), it[1]) for it in items])
        except OSError as exc:  # disk full, permissions: the events are dropped, counted
            self._warn("spool-io", "agentflux emitter: cannot write the spool %s: %s",
                       self.spool_dir, exc, level=logging.ERROR)
            return 0

    def _queues_to_spool(self) -> None:
        """The broker is unreachable and the spool has nothing unread: events waiting in memory
        that are not on disk go there, ahead of the buffer. Per partition that is the tail of
        its queue after the last event read from the spool (those are on disk still, and older:
        they stay, and are sent before what is read back)."""
        items = []
        for q in self._queues.values():
            tail = []
            while q and q[-1][3] is None:
                tail.append(q.pop())
            tail.reverse()
            items.extend(tail)
        if not items:
            return
        written = self._spool_append(items)
        lost = len(items) - written
        with self._cond:
            self._queued -= len(items)
            self._spooled += written
            self._dropped_bg += lost
            if lost:
                self._cond.notify_all()
        if lost:
            self._warn("spool-full", "agentflux emitter: the spool %s is full (%d bytes): %d events "
                       "dropped", self.spool_dir, self._spool.max_bytes, lost)

    def _spool_to_queues(self) -> bool:
        room = self._queue_limit - self._in_queues()
        if room <= 0:
            return False
        try:
            out, lost = self._spool.read(min(room, 10 * self.batch_events))
        except OSError as exc:
            self._warn("spool-io", "agentflux emitter: cannot read the spool %s: %s",
                       self.spool_dir, exc, level=logging.ERROR)
            return False
        queues = self._queues
        part = self._partition
        for sid, data, seg in out:
            queues[part(sid)].append((sid, data, 0, seg))
        if lost:  # events read back stay counted as spooled until they are sent
            with self._cond:
                self._spooled -= lost
                self._dropped_bg += lost
                self._cond.notify_all()
        return bool(self._spool.unread) and self._in_queues() < self._queue_limit

    def _resolve(self, items: list) -> None:
        spool = self._spool
        if spool is None:
            return
        counts: dict[_Segment, int] = {}
        for it in items:
            seg = it[3]
            if seg is not None:
                counts[seg] = counts.get(seg, 0) + 1
        for seg, n in counts.items():
            try:
                spool.resolved(seg, n)
            except OSError as exc:
                self._warn("spool-io", "agentflux emitter: cannot delete a spool segment: %s", exc,
                           level=logging.ERROR)

    # --- sending ------------------------------------------------------------------------------
    def _send_ready(self, now: float) -> None:
        producer = self._producer
        if producer is None or self._producer_closing:
            return
        for p, rec in list(self._retry.items()):
            if p not in self._inflight and rec.retry_at <= now:
                del self._retry[p]
                self._launch(producer, rec)
        if self._stalled:
            return  # only retries probe the broker until it answers again
        for p, q in self._queues.items():
            if q and p not in self._inflight and p not in self._retry:
                self._launch(producer, self._build(p, q))

    def _build(self, p: int, q: collections.deque) -> _Rec:
        chunk = []
        size = 2
        limit = self.max_record_bytes
        while q and len(chunk) < self.batch_events:
            n = len(q[0][1]) + 1
            if chunk and size + n > limit:
                break
            chunk.append(q.popleft())
            size += n
        return _Rec(p, chunk)

    def _launch(self, producer: Any, rec: _Rec) -> None:
        n = len(rec.items)
        rec.sent_at = time.monotonic()
        self._inflight[rec.p] = rec
        with self._cond:
            self._queued -= n - rec.n_spool
            self._spooled -= rec.n_spool
            self._inflight_n += n
            self._sent += n
            self._records += 1
        rec.task = asyncio.ensure_future(self._deliver(producer, rec))

    async def _deliver(self, producer: Any, rec: _Rec) -> None:
        try:
            fut = await producer.send(self.topic, value=rec.value, key=rec.key, partition=rec.p)
            await fut
        except asyncio.CancelledError:
            return  # abandoned: the shutdown or a producer reset accounts for it
        except Exception as exc:
            self._done(rec, exc, producer)
        else:
            self._done(rec, None, producer)

    def _done(self, rec: _Rec, exc: BaseException | None, producer: Any) -> None:
        if self._inflight.get(rec.p) is not rec:
            return  # abandoned meanwhile
        del self._inflight[rec.p]
        n = len(rec.items)
        kind = None if exc is None else _classify(exc)
        if kind is not None and kind != "fail":
            sender_task = getattr(getattr(producer, "_sender", None), "sender_task", None)
            if kind == "reset" or (sender_task is not None and sender_task.done()):
                kind = "reset"
        if kind is None:
            self._latched = False
            self._last_ack_at = time.monotonic()
            times = [it[2] for it in rec.items if it[2]]
            with self._cond:
                self._inflight_n -= n
                self._acked += n
                if times:
                    self._ack_sketch.add_many(
                        (time.perf_counter_ns() - np.array(times, dtype=np.int64)) / 1e6)
                self._cond.notify_all()
            self._resolve(rec.items)
            if self._producer is producer and not self._producer_closing:
                now = time.monotonic()
                self._stalled = self._is_stalled(now)
                self._send_ready(now)  # the partition's next record, without waiting a linger
        elif kind == "fail":
            with self._cond:
                self._inflight_n -= n
                self._failed += n
                self._cond.notify_all()
            log.warning("agentflux emitter: %d events failed (cannot be delivered): %r", n, exc)
            self._resolve(rec.items)
        else:
            rec.attempts += 1
            rec.retry_at = time.monotonic() + _backoff(rec.attempts)
            self._retry[rec.p] = rec
            self._latched = True
            with self._cond:
                self._inflight_n -= n
                self._queued += n - rec.n_spool
                self._spooled += rec.n_spool
            self._warn("retry", "agentflux emitter: the broker is unreachable (%r): %d events "
                       "will be sent again%s", exc, n,
                       f"; spilling to {self.spool_dir}" if self._spool else "")
            if kind == "reset":
                self._reset_producer(producer)

    def _reset_producer(self, producer: Any) -> None:
        """The producer is unusable: its unacknowledged records are sent again by a new one."""
        if self._producer is not producer:
            return
        self._producer = None
        for p, rec in list(self._inflight.items()):
            del self._inflight[p]
            if rec.task is not None:
                rec.task.cancel()
            self._retry[p] = rec
            with self._cond:
                self._inflight_n -= len(rec.items)
                self._queued += len(rec.items) - rec.n_spool
                self._spooled += rec.n_spool
        self._reconnect_at = time.monotonic() + _backoff(self._connect_attempts)
        asyncio.ensure_future(self._stop_producer(producer, 5.0))

    async def _reconnect(self) -> None:
        producer = None
        try:
            producer = self._make_producer()
            await asyncio.wait_for(producer.start(), self.send_timeout_s)
            if self._producer_closing:  # the emitter stopped meanwhile
                await self._stop_producer(producer, 1.0)
                return
            self._producer = producer
            self._connect_attempts = 0
        except Exception as exc:
            self._connect_attempts += 1
            self._reconnect_at = time.monotonic() + _backoff(self._connect_attempts)
            self._warn("reconnect", "agentflux emitter: cannot reconnect to Kafka at %s: %r",
                       self.settings.bootstrap_servers, exc)
            if producer is not None:
                await self._stop_producer(producer, 1.0)
        finally:
            self._connecting = False

    # --- stopping -----------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        """Stop the producer (bounded), then account for everything not delivered: to the
        spool, ahead of what is there, or counted as dropped and logged."""
        self._producer_closing = True
        producer, self._producer = self._producer, None
        if producer is not None:
            budget = self._close_deadline - time.monotonic()
            budget = 5.0 if budget == float("inf") else min(5.0, max(0.2, budget / 2))
            if self._inflight and self._stalled:
                budget = min(budget, 0.5)  # unreachable: nothing will be acknowledged
            await self._stop_producer(producer, budget)
        left = []  # oldest first per partition: in flight or to retry, then queued
        n_flight = flight_on_disk = mem_only = 0
        for p in sorted(set(self._inflight) | set(self._retry) | set(self._queues)):
            rec = self._inflight.pop(p, None)
            if rec is not None:
                if rec.task is not None:
                    rec.task.cancel()
                left.extend(rec.items)
                n_flight += len(rec.items)
                flight_on_disk += rec.n_spool
            rec = self._retry.pop(p, None)
            if rec is not None:
                left.extend(rec.items)
                mem_only += len(rec.items) - rec.n_spool
            q = self._queues.get(p)
            if q:
                left.extend(q)
                mem_only += sum(1 for it in q if it[3] is None)
                q.clear()
        items, bad, n = self._take(len(self._buf))
        spool = self._spool
        head_ok = False
        written = 0
        if spool is not None and spool.is_open:
            try:
                spool.rewrite_head([(it[0].encode(), it[1]) for it in left])
                head_ok = True
                written = spool.append([(it[0].encode(), it[1]) for it in items])
            except OSError as exc:
                log.error("agentflux emitter: cannot write the spool %s: %s", self.spool_dir, exc)
            finally:
                try:
                    spool.sync()
                except OSError as exc:
                    log.error("agentflux emitter: syncing the spool %s: %s", self.spool_dir, exc)
        # events read from the spool were counted as spooled and, rewritten or not, are on disk
        if head_ok:
            to_spool, lost = n_flight + mem_only, 0
        else:
            to_spool, lost = flight_on_disk, n_flight - flight_on_disk + mem_only
        lost += len(items) - written
        spooled = to_spool + written
        with self._cond:
            self._inflight_n -= n_flight
            self._queued -= mem_only
            self._taken += n
            self._failed += bad
            self._spooled += spooled
            self._dropped_bg += lost
            self._dropped_at_close += lost
            self._cond.notify_all()
        if self._spooled:
            log.warning("agentflux emitter: %d events not delivered yet are in the spool %s; an "
                        "emitter started on it delivers them", self._spooled, self.spool_dir)
        if lost:
            log.error("agentflux emitter: %d events could not be delivered before close() and are "
                      "dropped (%s)", lost, "the spool failed or is full" if spool is not None
                      else "set AGENTFLUX_SPOOL_DIR to keep them across broker outages")
