"""The windows agent's watermark: the least event time every input partition has reached.

Every trend-events record carries its score stage's marks: for each input partition it reads, the latest
event time read there ("partition time", as in Kafka Streams) and whether it is idle (caught up and quiet).
The watermark is the minimum over the input partitions that are not idle, or the maximum when all are
idle; until every partition has been heard from there is none. docs/decisions/2026-12-07-event-time-watermarks.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    """One input partition's progress, as its score stage last reported it."""

    time: float | None  # the latest event time read there; None before its first record
    idle: bool = False


def mark_to_json(mark: Mark) -> list[float | bool | None]:
    return [mark.time, mark.idle]


def mark_from_json(raw: object) -> Mark:
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], bool)
            and (raw[0] is None or (isinstance(raw[0], int | float) and not isinstance(raw[0], bool)))):
        raise ValueError(f"a mark is [time or null, idle], got {raw!r}")
    return Mark(None if raw[0] is None else float(raw[0]), raw[1])


class Watermarks:
    """The marks heard on one trend-events partition, and the watermark they give."""

    def __init__(self) -> None:
        self.inputs: set[str] = set()
        self.marks: dict[str, Mark] = {}

    def hear(self, marks: Mapping[str, Mark], inputs: Iterable[str] = ()) -> None:
        """A record's marks; a partition's time never goes back (a new owner may restart from an older commit)."""
        self.inputs.update(inputs)
        for name, mark in marks.items():
            self.inputs.add(name)
            old = self.marks.get(name)
            if old is not None and old.time is not None and (mark.time is None or mark.time < old.time):
                mark = Mark(old.time, mark.idle)
            self.marks[name] = mark

    def watermark(self) -> float | None:
        marks = [self.marks.get(name) for name in self.inputs]
        if not marks or any(m is None for m in marks):
            return None  # a partition not heard from yet may still hold anything
        active = [m.time for m in marks if m is not None and not m.idle]
        if any(t is None for t in active):
            return None  # a partition with records but no event time yet
        if active:
            return min(t for t in active if t is not None)
        times = [m.time for m in marks if m is not None and m.time is not None]
        return max(times) if times else None
