"""A shorter broker long-poll for Faust's consumer (and the score stage's), so one idle partition
cannot hold back the partitions that have data.

aiokafka keeps one fetch request in flight per broker, built from the partitions that have no
buffered records at that moment. When only idle partitions are in it (the table's changelog, a
quiet input partition), the broker holds it for ``fetch_max_wait_ms`` waiting for data that does
not come, and partitions drained in the meantime cannot be fetched until it returns. Faust hard-codes
1.5 s, long enough to stall the windows agent (figures: benchmarks/README.md).
"""

from __future__ import annotations

from typing import Any

FETCH_MAX_WAIT_MS = 100  # an idle consumer sends ten small fetches a second: nothing next to a 1 s stall


def tune_worker_consumer(**attributes: Any) -> None:
    """Set ``attributes`` on every consumer Faust's worker builds (aiokafka reads them when the consumer starts its
    fetcher). One wrapper however often it is called; refuse loudly if Faust no longer has the factory."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    current = getattr(AIOKafkaConsumerThread, "_create_worker_consumer", None)
    if current is None:
        raise RuntimeError("Faust's AIOKafkaConsumerThread._create_worker_consumer is gone: review fetch_wait.py")
    tuned: dict[str, Any] | None = getattr(current, "tonewatch_attributes", None)
    if tuned is not None:
        tuned.update(attributes)
        return
    tuned = dict(attributes)

    def create(self: Any, transport: Any) -> Any:
        consumer = current(self, transport)
        for name, value in tuned.items():
            setattr(consumer, name, value)
        return consumer

    create.tonewatch_attributes = tuned  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def shorten_fetch_wait() -> None:
    tune_worker_consumer(_fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
