"""A key's trend as an inline SVG chart, computed on the server: negative share and its baseline per window, with
the firing windows marked. Only numbers reach the SVG (the template draws them), so no text needs escaping."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

WIDTH = 640
HEIGHT = 160
PAD = 24  # room for the axis labels


@dataclass(frozen=True)
class Mark:
    x: float
    width: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    share: str       # polyline points "x,y x,y ..."
    baseline: str
    marks: tuple[Mark, ...]
    y_max: float      # the share at the top edge
    first: datetime | None
    last: datetime | None

    @property
    def empty(self) -> bool:
        return not self.share


def _points(xs: Sequence[float], ys: Sequence[float | None], y: Any) -> str:
    return " ".join(f"{x:.1f},{y(v):.1f}" for x, v in zip(xs, ys, strict=True) if v is not None)


def trend_chart(rows: Sequence[Mapping[str, Any]], firing: Iterable[tuple[datetime, datetime]],
                width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """``rows``: trend windows oldest first (``window_start``, ``window_end``, ``share``, ``baseline``);
    ``firing``: (start, end) of the windows to mark, clipped to the chart's span."""
    if not rows:
        return Chart(width, height, "", "", (), 0.0, None, None)
    t0 = rows[0]["window_start"].timestamp()
    t1 = max(r["window_end"].timestamp() for r in rows)
    span = max(t1 - t0, 1.0)
    shares = [float(r["share"]) for r in rows]
    baselines = [None if r.get("baseline") is None else float(r["baseline"]) for r in rows]
    top = max([*shares, *(b for b in baselines if b is not None), 0.05])
    y_max = min(1.0, top * 1.1)
    inner_w, inner_h = width - 2 * PAD, height - 2 * PAD

    def x(ts: float) -> float:
        return PAD + inner_w * (ts - t0) / span

    def y(v: float) -> float:
        return PAD + inner_h * (1 - min(v, y_max) / y_max)

    # each window drawn at its middle
    xs = [x((r["window_start"].timestamp() + r["window_end"].timestamp()) / 2) for r in rows]
    marks = []
    for start, end in firing:
        a, b = max(start.timestamp(), t0), min(end.timestamp(), t1)
        if b > a:
            marks.append(Mark(round(x(a), 1), round(x(b) - x(a), 1)))
    return Chart(width, height, _points(xs, shares, y), _points(xs, baselines, y), tuple(marks), y_max,
                 rows[0]["window_start"], rows[-1]["window_end"])
