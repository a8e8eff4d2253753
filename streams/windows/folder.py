"""The windows agent's work on a batch of trend-events records: partials into their keys' windows, then
every window the watermark has passed closed, judged and sent as a trends record (and an alert transition).

Partials are folded before the batch's marks move the watermark: a record's marks are what its score stage
had read once its partials were sent. Every failure is dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from streams.errors import dead_letter_record
from streams.metrics import GAUGE_DIMENSIONS, PipelineMetrics
from streams.score.outbox import partition_for
from streams.score.publisher import dumps
from streams.topics import Topics
from streams.windows.alerts import alert_payload
from streams.windows.detector import KeyState, Partial, Update, advance, next_close
from streams.windows.evict import ExpiryIndex, expires_at
from streams.windows.fold import decode_record, dump_state, encode_partials, fold_events, load_state, state_key
from streams.windows.trends import trend_record
from streams.windows.watermark import Watermarks
from tonewatch.core.sections import DetectorSettings
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
Sends = list[Awaitable[Any]]
APPLIED_KEEP = 1024  # folded offsets a key remembers: far more than are ever read twice (a batch or a hole)


@dataclass
class PartitionKeys:
    """One trend-events partition's index of its keys in the table."""

    closing: dict[str, float] = field(default_factory=dict)  # key -> watermark its oldest window closes at
    expiring: ExpiryIndex = field(default_factory=ExpiryIndex)  # idle keys (no open window, not firing)
    count: int = 0  # keys in the table


class WindowFolder:
    """State per key in the table; per trend-events partition its watermark and an index of its keys."""

    def __init__(self, settings: Settings, topics: Topics, table: Any, cfg: DetectorSettings,
                 metrics: PipelineMetrics, committed: Callable[[int], int | None] | None = None) -> None:
        self.settings, self.topics, self.table, self.cfg, self.metrics = settings, topics, table, cfg, metrics
        self.committed = committed or (lambda partition: None)  # the windows group's committed offset there
        self.watermarks: dict[int, Watermarks] = {}
        self.keys: dict[int, PartitionKeys] = {}

    def forget(self) -> None:
        """After a rebalance: partitions may have moved; indexes are rebuilt from the table, marks heard again."""
        self.watermarks.clear()
        self.keys.clear()
        self.metrics.table_keys.clear()

    async def dead_letter(self, reason: str, event: Any, stage: str, payload: bytes | None = None) -> Awaitable[Any]:
        """``payload`` names the part of a batch record that failed; by default the whole record."""
        msg = event.message
        self.metrics.dead_letter.labels(stage).inc()
        record = dead_letter_record(
            reason, event.value if payload is None else payload, stage=stage, topic=msg.topic,
            partition=msg.partition, offset=msg.offset,
        )
        return await self.topics.dead_letter.send(key=event.key, value=dumps(record))

    async def fold(self, events: list[Any]) -> None:
        per_key: dict[str, list[tuple[Any, Partial]]] = {}
        heard: dict[int, list[Any]] = {}
        sends: Sends = []
        for ev in events:  # a record holds the partials of many keys of its partition, or marks, or both
            try:
                record = decode_record(ev.value)
            except Exception as exc:
                sends.append(await self.dead_letter(f"bad trend event: {exc}", ev, "windows"))
                continue
            for t in record.partials:
                per_key.setdefault(state_key(t), []).append((ev, t))
            if record.marks or record.inputs:
                heard.setdefault(ev.message.partition, []).append(record)
        for key, items in per_key.items():
            sends += await self._fold_key_safely(key, items)
        reached: dict[int, float] = {}
        for partition, records in heard.items():
            sends += await self._advance_partition(partition, records, reached)
        await asyncio.gather(*sends)
        for partition, watermark in reached.items():  # once what it closed is sent: a reader can trust it
            self.metrics.watermark.labels(str(partition)).set(watermark)

    async def _fold_key_safely(self, key: str, items: list[tuple[Any, Partial]]) -> Sends:
        try:
            return await self._fold_key(key, items)
        except Exception as exc:  # a bug in the fold: the key's partials go, per record, none is lost
            sends: Sends = []
            for ev in {id(e): e for e, _ in items}.values():
                mine = [t for e, t in items if e is ev]
                sends.append(await self.dead_letter(f"window update failed: {exc}", ev, "windows",
                                                    payload=encode_partials(mine)))
            return sends

    async def _fold_key(self, key: str, items: list[tuple[Any, Partial]]) -> Sends:
        state = load_state(self.table.get(key))
        partition = items[-1][0].message.partition
        fresh = [(ev, t) for ev, t in items if not state.holds(partition, ev.message.offset)]
        if len(fresh) < len(items):  # re-read after a restart, already in the restored state: not counted twice
            self.metrics.trend_replays.inc(len({id(ev) for ev, _ in items} - {id(ev) for ev, _ in fresh}))
            if not fresh:
                return []
            items = fresh
        fold = fold_events(state, (t for _, t in items), self.cfg)
        applied = (partition, max(ev.message.offset for ev, _ in items))
        offsets = self._still_readable(state, partition, (ev.message.offset for ev, _ in items))
        sends: Sends = [self._write(key, partition, replace(fold.state, applied=applied, applied_offsets=offsets))]
        accepted = 0
        for (ev, tev), update in zip(items, fold.updates, strict=True):
            if update.accepted:
                accepted += tev.count
                continue  # one dead letter per refused partial: its payload lists every message id it sums
            sends.append(await self.dead_letter(f"later than allowed lateness ({self.cfg.allowed_lateness_s}s): "
                                                "its window is closed", ev, "windows", payload=encode_partials([tev])))
        last = items[-1][1]
        self.metrics.trend_events.labels(last.dimension).inc(accepted)  # one key, so one dimension
        if last.dimension in GAUGE_DIMENSIONS and fold.state.windows:
            latest = fold.state.windows[-1]
            self.metrics.negative_share.labels(last.dimension, last.key).set(latest.share)
            self.metrics.corrected_share.labels(last.dimension, last.key).set(latest.corrected_share)
            self.metrics.window_volume.labels(last.dimension, last.key).set(latest.count)
        return sends

    def _still_readable(self, state: KeyState, partition: int, folded: Iterable[int]) -> tuple[int, ...]:
        """The key's folded offsets that may be delivered again: at or after the partition's committed offset
        (one earlier, as Faust may count it either way), at most ``APPLIED_KEEP``."""
        same = state.applied is not None and state.applied[0] == partition
        offsets = sorted({*(state.applied_offsets or () if same else ()), *folded})
        committed = self.committed(partition)
        if committed is not None:
            offsets = [o for o in offsets if o >= committed - 1]
        return tuple(offsets[-APPLIED_KEEP:])

    def _write(self, key: str, partition: int, state: KeyState) -> Awaitable[Any]:
        """The state into the store and its changelog; awaited with the batch's sends, as the batch's offsets are
        committed once it is folded, and a state record still in the producer's buffer then dies with a stop."""
        index = self._index(partition)  # first: built after this write, it would count the key twice
        index.count += key not in self.table.data
        value = dump_state(state)
        # a batch has no "current event", which Table.__setitem__ needs for the changelog partition: write the
        # store and its changelog record directly, on the partition the key's records came from (co-partitioned)
        self.table.data[key] = value
        delivered = self.table.send_changelog(partition, key, value)
        self._note(index, key, state)
        return delivered

    def _note(self, index: PartitionKeys, key: str, state: KeyState) -> None:
        closes = next_close(state, self.cfg)
        if closes is None:
            index.closing.pop(key, None)
        else:
            index.closing[key] = closes
        index.expiring.set(key, expires_at(state, self.cfg.key_ttl_s))

    def _index(self, partition: int) -> PartitionKeys:
        """The partition's keys; after a restart or a rebalance, found once in the restored table."""
        if partition not in self.keys:
            parts = list(range(self.settings.kafka.topic_partitions))
            index = PartitionKeys()
            for key, raw in list(self.table.data.items()):
                if partition_for(key.encode(), parts) == partition:
                    index.count += 1
                    self._note(index, key, load_state(raw))
            self.keys[partition] = index
        return self.keys[partition]

    def _evict(self, partition: int, watermark: float) -> Sends:
        """Delete the partition's keys idle for the TTL: from the store, and from the changelog with a tombstone
        as Faust's ``Table.__delitem__`` does (value None, raw), so a restore does not bring them back."""
        index, tombstones = self._index(partition), []
        for key in index.expiring.due(watermark):  # every write notes its key's expiry: a firing key has none
            del self.table.data[key]
            tombstones.append(self.table.send_changelog(partition, key, None, value_serializer="raw"))
            index.count -= 1
            self.metrics.keys_evicted.labels(key.partition("|")[0]).inc()
        self.metrics.table_keys.labels(str(partition)).set(index.count)
        return tombstones

    async def _advance_partition(self, partition: int, records: list[Any], reached: dict[int, float]) -> Sends:
        marks = self.watermarks.setdefault(partition, Watermarks())
        for record in records:
            marks.hear(record.marks, record.inputs)
        watermark = marks.watermark()
        if watermark is None:
            return []
        reached[partition] = watermark
        due = [key for key, closes in self._index(partition).closing.items() if closes <= watermark]
        sends: Sends = []
        for key in due:  # a list first: advancing a key updates the index
            sends += await self._advance_key(key, partition, watermark)
        sends += self._evict(partition, watermark)  # after closing: a key whose last window just closed may be idle now
        return sends

    async def _advance_key(self, key: str, partition: int, watermark: float) -> Sends:
        dimension, _, name = key.partition("|")
        update = advance(load_state(self.table.get(key)), watermark, dimension, name, self.cfg)
        written = self._write(key, partition, update.state)
        return [written, *await self._publish(key, dimension, name, update)]

    async def _publish(self, key: str, dimension: str, name: str, update: Update) -> Sends:
        cfg, sends = self.cfg, []
        for closed in update.closed:
            record = trend_record(dimension, name, closed, cfg.window_s)
            sends.append(await self.topics.trends.send(key=key.encode(), value=dumps(record)))
        for t in update.transitions:
            payload = alert_payload(t, dimension, name, cfg.window_s, cfg.allowed_lateness_s,
                                    self.settings.delivery.dashboard_url)
            log.info("alert %s %s %s=%s", t.status, t.severity, dimension, name)
            self.metrics.alerts.labels(t.status, t.severity, dimension).inc()
            sends.append(await self.topics.alerts.send(key=t.alert_id.encode(), value=dumps(payload)))
        return sends
