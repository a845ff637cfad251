"""The allocator for the long-running worker's Arrow buffers, chosen before pyarrow loads.

The worker's RSS should follow its working set, not its past peaks, or a 30-minute soak cannot
tell a leak from an allocator that keeps what it once used. Arrow's buffers go to jemalloc
(unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses): it hands freed pages back within about a second,
where pyarrow's default, mimalloc, keeps them (a compaction merge of 2,000,000 rows left a
process 30 MB larger with mimalloc, 13 MB smaller with jemalloc three seconds later; over a
30-minute soak the worker's mimalloc arena grew from 100 to 130 MB). It has to be the
environment variable, read when the library loads: ``pyarrow.set_memory_pool`` changes only
what pyarrow's Python functions allocate, while the Parquet reader and writer keep Arrow's
compiled-in default.

Not done: a fixed glibc mmap threshold (256 KiB) and fewer malloc arenas. They kept the heap
flat too, but cost the drain 20-25 % (96,000 against 118,000 events/s: every batch's large
numpy arrays mapped and faulted in afresh); the heap's growth came from the de-duplication
horizon, which now allocates its buffer once (:mod:`agentflux.streams.dedup`).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("agentflux.memory")


def tune_memory() -> None:
    """Call first thing in a worker process (before pyarrow is imported)."""
    if "pyarrow" in sys.modules:
        log.warning("pyarrow was imported before the allocator was chosen: the Parquet reader "
                    "and writer stay on %s", os.environ.get("ARROW_DEFAULT_MEMORY_POOL",
                                                            "the default pool"))
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
