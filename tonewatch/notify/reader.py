"""Follows the state topics (subscriptions, acks, deliveries, incidents) without a consumer group.

Every notifier reads them whole at start: compacted topics are small. Incidents are read only then: the
notifier is their one writer, and its tracker holds them from there on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka.consumer import KafkaConsumer
from kafka.structs import TopicPartition

from tonewatch.core.kafka_io import client_config
from tonewatch.core.settings import Settings
from tonewatch.notify.state import State

log = logging.getLogger("tonewatch.notifier")
STATE_TOPICS = ("subscriptions", "acks", "deliveries", "incidents")


class StateReader:
    def __init__(self, settings: Settings, state: State) -> None:
        self.settings, self.state = settings, state
        self.names = {settings.kafka.topic(n): n for n in STATE_TOPICS}
        self.consumer = KafkaConsumer(**client_config(settings.kafka), enable_auto_commit=False, group_id=None)
        self.caught_up = False

    def _assign(self, deadline: float) -> list[TopicPartition]:
        while True:  # freshly created topics take a moment to appear in the metadata
            self.consumer.topics()
            parts = {t: self.consumer.partitions_for_topic(t) for t in self.names}
            if all(parts.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        tps = [TopicPartition(t, p) for t, ps in parts.items() for p in sorted(ps or ())]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        return tps

    def catch_up(self, timeout_s: float = 60.0) -> None:
        """Read every state topic to its current end before the first delivery decision."""
        deadline = time.monotonic() + timeout_s
        tps = self._assign(deadline)
        while True:
            try:  # a just-created topic may have no leader yet; kafka-python then fails oddly
                end, nxt = self.consumer.end_offsets(tps), self.consumer.beginning_offsets(tps)
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("state topics not ready (%s: %s); retrying", type(exc).__name__, exc)
                time.sleep(1.0)
        while any(nxt[tp] < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise RuntimeError("state topics not read to the end in time")
            batch = self.consumer.poll(timeout_ms=500)
            for tp, records in batch.items():
                nxt[tp] = records[-1].offset + 1
            self._fold(batch)
        self.caught_up = True

    def poll(self) -> None:
        """Fold whatever arrived since the last call, without waiting."""
        self._fold(self.consumer.poll(timeout_ms=0))

    def _fold(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            kind = self.names[tp.topic]
            if kind == "incidents" and self.caught_up:  # our own writes, read back
                continue
            for r in records:
                if kind == "subscriptions" and r.key is not None:
                    state = "removed" if r.value is None else "active"
                    log.info("subscription %s %s", r.key.decode(errors="replace"), state)
                self.state.apply(kind, tp.partition, r.offset, r.key, r.value)

    def close(self) -> None:
        self.consumer.close()
