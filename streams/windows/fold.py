"""Trend-event records and the per-key fold: one record per partition and one state write per key per batch.

The score stage sums a batch's events per key and window (streams/windows/detector.py ``Partial``) and
sends each partition's partials, in event-time order per key, as one record
(docs/decisions/2026-12-07-trend-partials.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pydantic_core

from streams.windows import spread
from streams.windows.detector import Driver, KeyState, Partial, TrendEvent, Update, apply_partial
from streams.windows.watermark import Mark, mark_from_json, mark_to_json
from tonewatch.core.sections import DetectorSettings


class _Keyed(Protocol):
    @property
    def dimension(self) -> str: ...
    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=_Keyed)


def state_key(ev: _Keyed) -> str:
    """The table and partition key: every event of one key meets the same state."""
    return f"{ev.dimension}|{ev.key}"


def group_by_key(events: Iterable[K]) -> dict[str, list[K]]:
    """Events (or partials) per key, each list in arrival order."""
    groups: dict[str, list[K]] = {}
    for ev in events:
        groups.setdefault(state_key(ev), []).append(ev)
    return groups


MAX_RECORD_BYTES = 512 * 1024  # well under Kafka's 1 MB default record limit


def encode_partials(partials: Sequence[Partial]) -> bytes:
    return pydantic_core.to_json({"partials": partials})


def pack_partials(partials: Iterable[Partial], max_bytes: int = MAX_RECORD_BYTES) -> Iterator[bytes]:
    """Record values of ``{"partials": [...]}`` of at most ``max_bytes``, partials kept in order.

    A partial is never split (one alone may exceed ``max_bytes``; the combiner's ``PARTIAL_ID_CHARS``
    keeps it far below 1 MB).
    """
    head, tail = b'{"partials":[', b"]}"
    chunk: list[bytes] = []
    size = len(head) + len(tail)
    for p in partials:
        encoded = pydantic_core.to_json(p)
        if chunk and size + len(encoded) + 1 > max_bytes:
            yield head + b",".join(chunk) + tail
            chunk, size = [], len(head) + len(tail)
        chunk.append(encoded)
        size += len(encoded) + 1
    if chunk:
        yield head + b",".join(chunk) + tail


def encode_marks(marks: Mapping[str, Mark], inputs: Iterable[str]) -> bytes:
    """A record of a score stage's progress alone: sent to every partition, so every key's windows can close."""
    return pydantic_core.to_json({"marks": {n: mark_to_json(m) for n, m in marks.items()}, "inputs": sorted(inputs)})


@dataclass(frozen=True)
class TrendRecord:
    partials: list[Partial]
    marks: dict[str, Mark]  # the score stage's input partitions' progress once these partials were sent
    inputs: tuple[str, ...]  # every input partition the score stage knows of


def decode_record(raw: bytes) -> TrendRecord:
    """A record of partials, of marks, or of both."""
    data: Any = pydantic_core.from_json(raw)
    if isinstance(data, dict) and "marks" in data:
        marks, inputs = data["marks"], data.get("inputs", [])
        if not isinstance(marks, dict) or not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise ValueError("'marks' must be an object and 'inputs' a list of partition names")
        partials = [_partial(item) for item in data.get("partials", [])]
        return TrendRecord(partials, {str(n): mark_from_json(m) for n, m in marks.items()}, tuple(inputs))
    return TrendRecord(decode_partials(raw), {}, ())


def decode_partials(raw: bytes) -> list[Partial]:
    """A record of partials; records of single events (what workers before the combiner wrote, as a
    batch or one event alone) are read too, an event becoming a partial of one."""
    data: Any = pydantic_core.from_json(raw)
    if not isinstance(data, dict):
        raise ValueError("a trend-events record must be a JSON object")
    if "partials" in data:
        items = data["partials"]
        if not isinstance(items, list) or not items:
            raise ValueError("'partials' must be a non-empty list")
        return [_partial(item) for item in items]
    items = data.get("events", [data])
    if not isinstance(items, list) or not items:
        raise ValueError("'events' must be a non-empty list")
    return [Partial.of(TrendEvent(**item)) for item in items]


def _partial(item: dict[str, Any]) -> Partial:
    """Checked here, so a malformed record is dead-lettered alone instead of failing its key's whole fold."""
    p = Partial(**{**item, "drivers": tuple(Driver.from_dict(d) for d in item.get("drivers", ())),
                   "message_ids": tuple(item.get("message_ids", ())), "slices": spread.from_json(item.get("slices"))})
    if not (isinstance(p.dimension, str) and isinstance(p.key, str) and _number(p.ts)
            and _number(p.p_negative_sum) and isinstance(p.count, int) and isinstance(p.negative, int)):
        raise ValueError("a partial needs string dimension and key, numeric ts and p_negative_sum, integer counts")
    if p.adjusted_sum is not None and not _number(p.adjusted_sum):
        raise ValueError("a partial's adjusted_sum must be a finite number")
    if p.count < 1 or not 0 <= p.negative <= p.count:
        raise ValueError(f"a partial needs 1 <= count and 0 <= negative <= count, got {p.count}/{p.negative}")
    if p.slices and (len(p.slices) != spread.SLICES or sum(c for c, _ in p.slices) != p.count
                     or sum(n for _, n in p.slices) != p.negative):
        raise ValueError("a partial's slices must be one window's, adding up to its count and negatives")
    return p


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Fold:
    state: KeyState
    updates: list[Update]  # one per partial, in order: what it changed (late ones not accepted)


def fold_events(state: KeyState, partials: Iterable[Partial], cfg: DetectorSettings) -> Fold:
    """Add partials one by one to their windows; only the state write is batched. Windows close later, when
    the watermark passes them (:func:`streams.windows.detector.advance`)."""
    updates = []
    for ev in partials:
        update = apply_partial(state, ev, cfg)
        updates.append(update)
        if update.accepted:
            state = update.state
    return Fold(state, updates)


def dump_state(state: KeyState) -> bytes:
    """The table value: JSON written in Rust (``dataclasses.asdict`` per event was a tenth of the worker's CPU)."""
    return pydantic_core.to_json(state)


def load_state(raw: bytes | dict[str, Any] | None) -> KeyState:
    """Raw JSON from the table; a dict (a state written by the JSON-serialised table before) is read too."""
    if not raw:
        return KeyState()
    return KeyState.from_dict(raw if isinstance(raw, dict) else pydantic_core.from_json(raw))
