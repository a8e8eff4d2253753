"""The report's figures as PNG bytes.

Built on ``matplotlib.figure.Figure`` (Agg canvas), never pyplot: no global state, no display,
safe to call from any thread or a headless server.
"""

from __future__ import annotations

import io
import math
from datetime import datetime, timedelta

from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, DateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from tonewatch.report.data import KeySeries

FIRING, RESOLVED, SHARE, BASELINE, VOLUME = "#c0392b", "#1e8449", "#1f4e79", "#7f8c8d", "#d5dbe0"
PALETTE = ["#1f4e79", "#e67e22", "#16a085", "#8e44ad", "#c0392b", "#7f8c8d"]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # fixed margins, not a tight box: every figure's plot area spans the same pixels, so time lines up
    fig.subplots_adjust(left=0.07, right=0.93, top=0.88, bottom=0.2)
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _time_axis(ax: Axes, span: tuple[datetime, datetime] | None, label: str = "window start (UTC)") -> None:
    """UTC clock ticks; every figure of a page gets the same span so they line up by eye."""
    if span is not None:
        ax.set_xlim(float(date2num(span[0])), float(date2num(span[1])))
    locator = AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M\n%d %b", tz="UTC"))
    ax.set_xlabel(label)
    ax.grid(True, axis="y", alpha=0.3)


def _centre(starts: list[datetime], window_s: int) -> list[float]:
    """Window centres as matplotlib date numbers (days), where a bar of the window's width sits."""
    return [float(date2num(s + timedelta(seconds=window_s / 2))) for s in starts]


def _broken(x: list[float], y: list[float | None], window_s: int) -> tuple[list[float], list[float]]:
    """Points with a NaN wherever windows are missing (or the value is unknown), so no line bridges a gap."""
    step = window_s / 86400
    xs: list[float] = []
    ys: list[float] = []
    for xi, yi in zip(x, y, strict=True):
        if xs and xi - xs[-1] > step * 1.5:
            xs.append(xs[-1] + step)
            ys.append(math.nan)
        xs.append(xi)
        ys.append(math.nan if yi is None else yi)
    return xs, ys


def key_figure(s: KeySeries, window_s: int, span: tuple[datetime, datetime] | None = None) -> bytes:
    """Negative share per closed window against its baseline, volume behind, alert transitions marked."""
    fig = Figure(figsize=(12, 4.2))
    ax = fig.add_subplot()
    vol = ax.twinx()
    ax.set_zorder(vol.get_zorder() + 1)  # lines above the volume bars
    ax.patch.set_visible(False)
    x = _centre(s.starts, window_s)
    half = window_s / 86400 / 2
    vol.bar(x, s.counts, width=half * 1.7, color=VOLUME, label="messages per window")
    vol.set_ylabel("messages per window", color="#5d6d7e")
    vol.yaxis.set_major_locator(MaxNLocator(integer=True))
    vol.set_ylim(0, max(s.counts, default=1) * 2.2)  # bars in the lower half, out of the lines' way
    for xi, alerting in zip(x, s.alerting, strict=True):
        if alerting:
            ax.axvspan(xi - half, xi + half, color=FIRING, alpha=0.12, lw=0)
    ax.plot(*_broken(x, list(s.shares), window_s), "o-", color=SHARE, ms=3.5, lw=1.6, label="negative share")
    ax.plot(*_broken(x, s.baselines, window_s), "--", color=BASELINE, lw=1.4, drawstyle="steps-mid",
            label="baseline it was judged against")
    for t in _centre(s.firing, window_s):
        ax.axvline(t, color=FIRING, lw=1.4)
        ax.annotate("▲ firing ", (t, 1.02), color=FIRING, ha="right", fontsize=9, fontweight="bold")
    for t in _centre(s.resolved, window_s):
        ax.axvline(t, color=RESOLVED, lw=1.4, ls=":")
        ax.annotate(" ▼ resolved", (t, 1.02), color=RESOLVED, ha="left", fontsize=9, fontweight="bold")
    ax.set_ylim(0, 1.1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel(f"negative share per {window_s}s window")
    ax.set_title(f"{s.dimension} {s.key}", loc="left", fontweight="bold")  # short: the legend shares its row
    _time_axis(ax, span)
    handles = ax.get_legend_handles_labels()[0] + vol.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3, fontsize=8, frameon=False)
    return _png(fig)


def stacked_figure(
    series: dict[str, dict[datetime, int]], window_s: int, title: str, ylabel: str,
    span: tuple[datetime, datetime] | None = None,
) -> bytes:
    """Stacked bars per window of event time, one colour per series (sources, model versions)."""
    fig = Figure(figsize=(12, 3.2))
    ax = fig.add_subplot()
    starts = sorted({t for counts in series.values() for t in counts})
    x = _centre(starts, window_s)
    bottom = [0] * len(starts)
    for i, (name, counts) in enumerate(series.items()):
        heights = [counts.get(t, 0) for t in starts]
        ax.bar(x, heights, bottom=bottom, width=window_s / 86400 * 0.85, color=PALETTE[i % len(PALETTE)],
               label=f"{name} ({sum(heights):,})")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_title(title, loc="left", fontweight="bold")
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _time_axis(ax, span, "event time (UTC)")
    if series:
        ax.set_ylim(0, max(bottom) * 1.1)
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False, ncols=min(len(series), 4))
    return _png(fig)
