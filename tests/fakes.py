"""Fakes several unit tests share."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock and its sleep: sleeping moves the time on at once, and is recorded."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s
