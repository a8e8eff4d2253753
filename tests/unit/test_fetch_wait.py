"""Faust's consumer is built with Tonewatch's broker long-poll, not its hard-coded 1.5 s."""

from __future__ import annotations

import asyncio

import faust

from streams.score.fetch_wait import FETCH_MAX_WAIT_MS, shorten_fetch_wait


def test_faust_worker_consumer_long_polls_briefly() -> None:
    shorten_fetch_wait()
    shorten_fetch_wait()  # idempotent: one wrapper, not two
    app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1")
    thread = app.consumer._thread  # Faust's aiokafka consumer thread, never started here

    async def build() -> int:  # aiokafka objects need a running loop
        return int(thread._create_worker_consumer(app.transport)._fetch_max_wait_ms)

    assert asyncio.run(build()) == FETCH_MAX_WAIT_MS < 1500
