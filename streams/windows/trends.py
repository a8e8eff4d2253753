"""Trend fan-out and trend records: one scored message counts once per dimension it belongs to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.records import Scored
from streams.windows import spread
from streams.windows.detector import ClosedWindow, Driver, Partial, top_drivers, window_start
from streams.windows.fold import group_by_key

DIMENSIONS = ("ticker", "sector", "topic", "source")
DRIVER_TEXT_CHARS = 280
# a partial lists every message id it sums; past this many id characters (at most 6 bytes each in JSON) the
# key's window goes on in a new partial, so one partial stays far below Kafka's 1 MB record limit
PARTIAL_ID_CHARS = 64_000


def dimension_keys(s: Scored) -> list[tuple[str, str]]:
    keys = [("ticker", t) for t in s.tickers] + [("sector", x) for x in s.sectors]
    return [*keys, ("topic", s.topic), ("source", s.source)]


@dataclass
class _Sum:
    ts: float
    count: int = 0
    negative: int = 0
    p_negative_sum: float = 0.0
    adjusted_sum: float = 0.0
    drivers: list[Driver] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    id_chars: int = 0
    slices: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in range(spread.SLICES)])


class Combiner:
    """A batch's trend events, summed per key and window into partials (streams/windows/detector.py ``Partial``).

    Add messages in event-time order (the score stage sorts each batch): then folding a key's
    partials gives the same windows as folding its events one by one.
    """

    def __init__(self, window_s: int, top: int, id_chars: int = PARTIAL_ID_CHARS,
                 adjust: Callable[[Scored], float] | None = None) -> None:
        self.window_s, self.top, self.id_chars = window_s, top, id_chars
        self.adjust = adjust  # a message's corrected negative count (score/rates.py); None: its label
        self._sums: dict[tuple[str, str, float], _Sum] = {}
        self._full: list[tuple[tuple[str, str, float], _Sum]] = []  # sums closed at ``id_chars``, in order

    def add(self, s: Scored) -> None:
        ts = s.ts.timestamp()
        start = window_start(ts, self.window_s)
        negative = s.sentiment == "negative"
        at = spread.slice_of(ts, start, self.window_s)
        p = s.p_negative
        adj = float(negative) if self.adjust is None else self.adjust(s)
        id_chars = len(s.id)
        driver = Driver(s.id, s.text[:DRIVER_TEXT_CHARS], s.source, round(p, 4), tuple(s.tickers)) \
            if negative and self.top else None
        for dim, key in dimension_keys(s):
            acc = self._sums.get((dim, key, start))
            if acc is None or acc.id_chars >= self.id_chars:
                if acc is not None:
                    self._full.append(((dim, key, start), acc))
                acc = self._sums[(dim, key, start)] = _Sum(ts)
            acc.id_chars += id_chars
            acc.count += 1
            acc.negative += negative
            acc.p_negative_sum += p
            acc.adjusted_sum += adj
            acc.slices[at][0] += 1
            acc.slices[at][1] += negative
            acc.ids.append(s.id)
            if driver is not None:
                acc.drivers.append(driver)
            if ts >= acc.ts:  # the latest event's versions speak for the partial, as its time does
                acc.ts, acc.versions = ts, s.model_versions

    def partials(self) -> dict[str, list[Partial]]:
        """Per state key (``dimension|key``), its partials in window order (a window's closed sums first)."""
        return group_by_key(
            Partial(dim, key, acc.ts, acc.count, acc.negative, acc.p_negative_sum,
                    top_drivers(tuple(acc.drivers), self.top), tuple(acc.ids), acc.versions, acc.adjusted_sum,
                    tuple((c, n) for c, n in acc.slices))
            for (dim, key, _), acc in sorted([*self._full, *self._sums.items()], key=lambda kv: kv[0][2])
        )


def trend_record(dimension: str, key: str, closed: ClosedWindow, window_s: int) -> dict[str, Any]:
    """A finished window as counts and sums, so consumers can re-aggregate to any longer view."""
    w = closed.window
    return {
        "dimension": dimension,
        "key": key,
        "window_start": w.start,
        "window_end": w.start + window_s,
        "count": w.count,
        "negative": w.negative,
        "negative_share": round(w.share, 6),
        "p_negative_sum": round(w.p_negative_sum, 6),
        "baseline": round(closed.baseline, 6),
        # the estimated true share (streams/windows/prevalence.py) and its baseline: what alerts measure
        "corrected_share": round(w.corrected_share, 6),
        "corrected_baseline": round(closed.baseline if closed.corrected is None else closed.corrected, 6),
        "adjusted_sum": round(w.adjusted_sum, 6),
        "alerting": closed.alerting,
        **({"rolling": {"seconds": closed.rolling.seconds, "count": closed.rolling.count,
                        "negative": closed.rolling.negative, "negative_share": round(closed.rolling.share, 6)}}
           if closed.rolling else {}),
    }
