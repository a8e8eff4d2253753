"""Trend fan-out and trend records: one scored message counts once per dimension it belongs to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.records import Scored
from streams.windows import ClosedWindow, TrendEvent

DIMENSIONS = ("ticker", "sector", "topic", "source")


def trend_events(s: Scored) -> Iterable[TrendEvent]:
    keys = [("ticker", t) for t in s.tickers] + [("sector", x) for x in s.sectors]
    keys += [("topic", s.topic), ("source", s.source)]
    for dim, key in keys:
        yield TrendEvent(
            dimension=dim, key=key, ts=s.ts.timestamp(), negative=s.sentiment == "negative",
            p_negative=s.p_negative, message_id=s.id, text=s.text[:280], source=s.source,
            model_versions=s.model_versions,
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
        "alerting": closed.alerting,
        **({"rolling": {"seconds": closed.rolling.seconds, "count": closed.rolling.count,
                        "negative": closed.rolling.negative, "negative_share": round(closed.rolling.share, 6)}}
           if closed.rolling else {}),
    }
