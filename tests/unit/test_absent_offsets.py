"""Offsets a read_committed fetch skips (transaction markers, aborted batches), seen from aiokafka's own
record parsing: a real transactional batch, its commit marker and an aborted batch, in memory."""

from __future__ import annotations

from typing import Any

from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from streams.windows.absent import AbsentOffsets, absent_between, track_absent_offsets


def test_absent_between_is_what_the_fetch_moved_over_without_returning() -> None:
    assert absent_between(10, 15, [10, 11, 13]) == [12, 14]
    assert absent_between(10, 10, []) == []


def test_only_watched_topics_are_kept() -> None:
    absent = AbsentOffsets(["trend-events"])
    absent.note("news", 0, [1, 2])
    absent.note("trend-events", 0, [4, 9])
    assert absent.since("news", 0, None) == set()
    assert absent.since("trend-events", 0, 5) == {9}
    assert absent.since("trend-events", 0, None) == {9}  # 4 was forgotten at the commit past it


def _batch(base: int, n: int, *, control: bool = False, producer_id: int = 7) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=1, producer_id=producer_id,
                                        producer_epoch=0, base_sequence=base, batch_size=1 << 20)
    if control:  # a commit marker: key version 0, type 1 (COMMIT)
        builder.append(0, timestamp=0, key=b"\x00\x00\x00\x01", value=b"\x00\x00\x00\x00\x00\x00", headers=[])
        raw = bytearray(builder.build())
        raw[21:23] = (int.from_bytes(raw[21:23], "big") | 0x20).to_bytes(2, "big")  # control bit of attributes
    else:
        for i in range(n):
            builder.append(i, timestamp=0, key=None, value=b"v", headers=[])
        raw = bytearray(builder.build())
    raw[0:8] = base.to_bytes(8, "big")  # base offset
    return bytes(raw)


class _State:
    def __init__(self, position: int) -> None:
        self.position, self.paused = position, False

    def consumed_to(self, offset: int) -> None:
        self.position = offset


class _Assignment:
    active = True

    def __init__(self, state: _State) -> None:
        self.state = state

    def state_value(self, tp: Any) -> _State:
        return self.state


def test_a_fetch_notes_the_commit_marker_and_the_aborted_batch() -> None:
    # offsets 0-1 committed records, 2 their commit marker, 3-4 a batch whose transaction was aborted
    # (producer 8, listed by the broker as aborted from offset 3), 5 its abort marker is left out
    raw = _batch(0, 2) + _batch(2, 1, control=True) + _batch(3, 2, producer_id=8)
    tp = TopicPartition("trend-events", 0)
    records = PartitionRecords(tp, MemoryRecords(raw), [(8, 3)], 0, None, None, False, READ_COMMITTED)
    state = _State(0)
    result = FetchResult(tp, assignment=_Assignment(state), partition_records=records, backoff=0)
    absent = AbsentOffsets(["trend-events"])
    track_absent_offsets(absent)
    got = result.getall()
    assert [m.offset for m in got] == [0, 1]
    assert state.position == 5
    assert absent.since("trend-events", 0, 0) == {2, 3, 4}
