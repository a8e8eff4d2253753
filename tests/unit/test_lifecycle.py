"""Shared clients start once for the first concurrent actor and stop once after the last."""

from __future__ import annotations

import asyncio

from streams.lifecycle import SharedLifecycle


def test_started_by_the_first_user_and_stopped_after_the_last() -> None:
    calls: list[str] = []

    def step(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            calls.append(name)
        return run

    shared = SharedLifecycle(step("client"), step("follower"), stop=(step("follower-stop"), step("client-stop")))

    async def actor(hold: float) -> None:
        async with shared:
            calls.append("work")
            await asyncio.sleep(hold)

    async def main() -> None:
        await asyncio.gather(actor(0.05), actor(0.01))
        async with shared:  # a later actor starts the clients again
            pass

    asyncio.run(main())
    assert calls == ["client", "follower", "work", "work", "follower-stop", "client-stop",
                     "client", "follower", "follower-stop", "client-stop"]
