"""Idempotency on event id: the horizon, repeats inside a batch, warming after a restart."""

import uuid

import numpy as np
import pytest

from agentflux.streams.dedup import RecentIds, id_hashes


def ids(n):
    return [str(uuid.uuid4()) for _ in range(n)]


def test_a_repeated_id_is_a_duplicate_in_the_same_batch_and_in_later_ones():
    r = RecentIds(1000)
    a = ids(5)
    batch = id_hashes(a + [a[1], a[3]])
    dup = r.duplicates(0, batch)
    assert dup.tolist() == [False] * 5 + [True, True]  # the first occurrence lands
    r.remember(0, batch[~dup])
    assert r.duplicates(0, id_hashes([a[4], *ids(2)])).tolist() == [True, False, False]
    assert not r.duplicates(1, id_hashes(a)).any()  # the horizon is per partition


def test_the_horizon_holds_at_least_capacity_ids_and_memory_stays_bounded():
    r = RecentIds(800)
    seen = ids(5000)
    for i in range(0, len(seen), 50):
        h = id_hashes(seen[i:i + 50])
        r.remember(0, h[~r.duplicates(0, h)])
    assert r.duplicates(0, id_hashes(seen[-800:])).all()
    assert not r.duplicates(0, id_hashes(seen[:1000])).any()  # long forgotten
    part = r._parts[0]
    assert part.size <= 800 + 800 // 8  # (and its buffer is allocated whole at the start)
    assert part.buf.nbytes == 8 * (800 + 800 // 8)


def test_warming_from_the_history_restores_the_horizon():
    landed = ids(100)
    r = RecentIds(1000)
    r.warm(3, landed[::-1])  # newest first, as the history returns them
    assert r.known(3) and not r.known(4)
    assert r.duplicates(3, id_hashes(landed)).all()


def test_a_horizon_too_small_is_refused():
    with pytest.raises(ValueError, match="AGENTFLUX_DEDUP_EVENTS"):
        RecentIds(2)


def test_hashes_are_int64_arrays():
    h = id_hashes(ids(3))
    assert h.dtype == np.int64 and len(h) == 3
