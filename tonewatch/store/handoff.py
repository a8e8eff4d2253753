"""The sink's two threads and the GIL: its writer waits on PostgreSQL's replies while its reader decodes records.

At Python's default switch interval (5 ms) each reply waits up to 5 ms for the reader to let go of the GIL, and a
batch takes about ten round trips: the sink wrote 12,900 rows/s, 14,500 at 0.2 ms (docs/store.md#performance).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_INTERVAL_S = 0.0002


@contextmanager
def quick_handoff(interval_s: float = SWITCH_INTERVAL_S) -> Iterator[None]:
    """The interpreter's thread switch interval set to ``interval_s`` while the block runs, then put back."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
