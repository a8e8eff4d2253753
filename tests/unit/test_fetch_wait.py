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


def test_read_committed_and_the_short_long_poll_share_one_wrapper() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from streams.windows.absent import read_committed

    shorten_fetch_wait()
    read_committed()
    read_committed()  # once more, as a second app in one process does: still one wrapper
    factory = AIOKafkaConsumerThread._create_worker_consumer
    assert factory.tonewatch_attributes == {  # type: ignore[attr-defined]
        "_fetch_max_wait_ms": FETCH_MAX_WAIT_MS, "_isolation_level": "read_committed"}
    app = faust.App("read-committed-test", broker="kafka://127.0.0.1:1")

    async def build() -> tuple[int, str]:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms, consumer._isolation_level

    assert asyncio.run(build()) == (FETCH_MAX_WAIT_MS, "read_committed")
