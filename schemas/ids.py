"""UUIDv7 identifiers (RFC 9562): 48-bit millisecond timestamp, version, 74 random bits.

Ids sort by creation time, which keeps DuckDB's zone maps useful. Pass a seeded
``random.Random`` for reproducible ids (the simulator does).
"""

from __future__ import annotations

import random as _random
import time


def uuid7(ts_ns: int | None = None, rng: _random.Random | None = None) -> str:
    ms = (time.time_ns() if ts_ns is None else ts_ns) // 1_000_000
    bits = (rng or _random).getrandbits(74)
    value = ((ms & 0xFFFF_FFFF_FFFF) << 80) | (0x7 << 76) | ((bits >> 62) << 64) \
        | (0b10 << 62) | (bits & 0x3FFF_FFFF_FFFF_FFFF)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
