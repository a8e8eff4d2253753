"""The longer rolling view per key: the last closed windows as counts, never as messages.

Tumbling windows answer "what happened this minute"; risk teams also read "the last 15 minutes".
Keeping (start, count, negative) of the closed windows inside that span keeps the state tiny
and lets every trends record carry both views.
"""

from __future__ import annotations

from dataclasses import dataclass

Recent = tuple[tuple[float, int, int], ...]  # (window start, count, negative), oldest first


@dataclass(frozen=True)
class RollingView:
    seconds: int
    count: int
    negative: int

    @property
    def share(self) -> float:
        return self.negative / self.count if self.count else 0.0


def push(recent: Recent, start: float, count: int, negative: int, window_s: int, span_s: int) -> Recent:
    """Add a closed window and drop those that fall out of the span ending with it (gaps count as empty)."""
    horizon = start + window_s - span_s
    return (*(r for r in recent if r[0] >= horizon), (start, count, negative))


def view(recent: Recent, span_s: int) -> RollingView:
    return RollingView(span_s, sum(r[1] for r in recent), sum(r[2] for r in recent))


def from_json(data: list[list[float]] | None) -> Recent:
    """State read back from the changelog (JSON lists); older states have none."""
    return tuple((float(s), int(c), int(n)) for s, c, n in data or ())
