"""Allocator settings for the long-running worker, applied before anything imports pyarrow.

The worker's RSS should follow its working set, not its past peaks, or a 30-minute soak cannot
tell a leak from an allocator that keeps what it once used:

- Arrow's buffers on jemalloc (unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses): jemalloc hands
  freed pages back within about a second, where pyarrow's default, mimalloc, keeps them (a
  compaction merge of 2,000,000 rows left a process 30 MB larger with mimalloc, 13 MB smaller
  with jemalloc three seconds later). It has to be the environment variable, read when the
  library loads: ``pyarrow.set_memory_pool`` changes only what pyarrow's Python functions
  allocate, while the Parquet reader and writer keep Arrow's compiled-in default (a 30-minute
  soak showed the worker's mimalloc arena growing from 100 to 130 MB that way).
- glibc's malloc (numpy arrays, Python objects): a fixed mmap threshold of 256 KiB, so a batch's
  large arrays are mapped and unmapped instead of carving the heap (glibc raises its threshold
  after the first free, up to 32 MiB, and the heap then keeps the high-water mark of every batch
  size), and at most 4 arenas for the worker's threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("agentflux.memory")

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_M_ARENA_MAX = -8


def tune_memory() -> None:
    """Call first thing in a worker process (before pyarrow is imported)."""
    if "pyarrow" in sys.modules:
        log.warning("pyarrow was imported before the allocator was chosen: the Parquet reader "
                    "and writer stay on %s", os.environ.get("ARROW_DEFAULT_MEMORY_POOL",
                                                            "the default pool"))
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
        libc.mallopt(_M_ARENA_MAX, 4)
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        pass
