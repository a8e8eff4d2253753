"""When in its window each message came: does a surge outlast one window's length, or is it a blip?

A one-minute blip (one author, one thread, one story retracted) and the first minute of a real surge look the
same to a window, however large. A window therefore keeps its messages per slice ((count, negative) for each
sixth of ``window_s``); the counts add up like every other partial, so batching changes nothing. Before a key
fires, the negatives in excess of the baseline share over its last windows must not all fit in one window's
length: past the densest ``SPAN`` consecutive slices, which hold any burst no longer than a window wherever
it starts, there must be excess left, a real share of the whole and clear of noise. A surge that has
lasted two whole windows leaves five twelfths of its excess outside any seven slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SLICES = 6  # per window
SPAN = SLICES + 1  # slices that hold any burst as long as a window, aligned with them or not
SUSTAIN_SHARE = 0.2  # excess beyond the densest window-length: at least this share of the whole excess
SUSTAIN_Z = 2.0  # ... and this many noise deviations (and at least this many messages) above the baseline
SUSTAIN_WINDOWS = 3  # the closed windows looked at, the one being judged included

Slices = tuple[tuple[int, int], ...]  # (count, negative) per slice, oldest first


def slice_of(ts: float, start: float, window_s: int) -> int:
    """Which slice of the window starting at ``start`` holds ``ts`` (clamped: float rounding at an edge)."""
    return min(max(int((ts - start) * SLICES // window_s), 0), SLICES - 1)


def single(ts: float, start: float, window_s: int, negative: bool) -> Slices:
    """One message's slices: a window with only it."""
    q = slice_of(ts, start, window_s)
    return tuple((1, int(negative)) if i == q else (0, 0) for i in range(SLICES))


def merge(a: Slices, b: Slices) -> Slices:
    """Slice by slice sums; an empty side (a record or state from before slices) adds nothing."""
    if not a:
        return b
    if not b:
        return a
    return tuple((ca + cb, na + nb) for (ca, na), (cb, nb) in zip(a, b, strict=True))


def whole(count: int, negative: int, ts: float | None, start: float, window_s: int) -> Slices:
    """The slices of counts known only as a total (written before slices): all in the slice of ``ts``."""
    q = slice_of(start if ts is None else ts, start, window_s)
    return tuple((count, negative) if i == q else (0, 0) for i in range(SLICES))


def push(history: Slices, window: Slices, missing: int) -> Slices:
    """The last ``SUSTAIN_WINDOWS`` closed windows' slices after one more closes; windows with no messages
    between them (``missing``) count as empty."""
    empty = ((0, 0),) * SLICES
    added = empty * min(max(missing, 0), SUSTAIN_WINDOWS) + (window or empty)
    return (history + added)[-SUSTAIN_WINDOWS * SLICES:]


def outlasts(slices: Sequence[tuple[int, int]], base: float) -> bool:
    """Whether the negatives above ``base`` share in ``slices`` reach past their densest window-length:
    the excess outside it is at least ``SUSTAIN_SHARE`` of all the excess and ``SUSTAIN_Z`` deviations of
    the binomial noise of the messages there."""
    excess = [n - base * c for c, n in slices]
    total = sum(excess)
    if len(excess) <= SPAN or total <= 0:
        return False
    best = max(range(len(excess) - SPAN + 1), key=lambda i: sum(excess[i:i + SPAN]))
    outside = [i for i in range(len(excess)) if not best <= i < best + SPAN]
    rest = sum(excess[i] for i in outside)
    noise = math.sqrt(sum(base * (1 - base) * slices[i][0] for i in outside))
    return rest >= SUSTAIN_SHARE * total and rest >= SUSTAIN_Z * max(noise, 1.0)


def from_json(raw: object) -> Slices:
    """Slices read back from JSON (lists of [count, negative]); None, from before slices, is none."""
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or len(raw) % SLICES:
        raise ValueError(f"slices must be a list of [count, negative] pairs, {SLICES} per window")
    out = []
    for pair in raw:
        if not (isinstance(pair, list | tuple) and len(pair) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in pair) and 0 <= pair[1] <= pair[0]):
            raise ValueError(f"a slice is [count, negative] with 0 <= negative <= count, got {pair!r}")
        out.append((pair[0], pair[1]))
    return tuple(out)
