"""Clients shared by every concurrent actor of an agent: started once by the first, closed by the last.

Faust runs ``concurrency`` copies of an agent's body; the Triton client and the model-events
follower are per worker, not per copy, and must be ready before any copy handles a message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

Step = Callable[[], Awaitable[None]]


class SharedLifecycle:
    """``async with`` it in each actor; start steps run in order, stop steps in the order given."""

    def __init__(self, *start: Step, stop: Sequence[Step]) -> None:
        self._start, self._stop = start, stop
        self._users = 0
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> SharedLifecycle:
        async with self._lock:
            if self._users == 0:
                for step in self._start:
                    await step()
            self._users += 1
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0:
                for step in self._stop:
                    await step()
