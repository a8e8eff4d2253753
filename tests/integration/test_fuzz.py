"""Bad-input fuzz on the real stack (issue #8): 10,000 malformed messages, every one dead-lettered.

The payloads come from a seeded generator of the categories hostile producers send, so a run is
reproducible and each category is represented; a few valid messages ride along and must be scored.
Run with ``-s`` to see the rejection throughput.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams.errors import DEAD_LETTER_COPY_BYTES
from streams.pii import mask_payload
from streams.records import InvalidMessage, parse_message
from tests.integration.conftest import Worker, wait_for
from tonewatch.core.kafka_io import producer, read_json
from tonewatch.core.sections import ScoringSettings
from tonewatch.replay import wait_for_pipeline

pytestmark = pytest.mark.integration

N_BAD = 10_000
N_GOOD = 20
GOOD: dict[str, Any] = {"id": "x", "source": "news", "ts": "2026-01-05T14:00:00Z", "text": "Oil slumps on demand"}
ODD = ["\u202e", "\u200b", "\ufeff", "é", "😀", "\U0010ffff", "\u0301", "ß", "\u2028", "中"]


def _good(**overrides: Any) -> str:
    return json.dumps({**GOOD, **overrides}, ensure_ascii=False)


def _bad_json(r: random.Random) -> bytes:
    whole = _good(id=f"j{r.random()}")
    return r.choice([
        whole[: r.randrange(1, len(whole) - 1)],  # truncated
        whole.replace('"', "'"),  # single quotes
        whole[:-1] + ",}",  # trailing comma
        "{" * r.randrange(1, 5000),  # unclosed / deeply nested
        "[" * 3000 + "]" * 3000,  # nested beyond the parser's depth
        "NaN", "", "   ", "null", "true", "[1, 2]", '"a string"', str(r.randrange(10**6)), "1" * 5000,
    ]).encode()


def _wrong_types(r: random.Random) -> bytes:
    field, value = r.choice([
        ("id", r.randrange(100)), ("id", ""), ("id", None), ("id", "i" * 129), ("source", "fax"), ("source", ["news"]),
        ("text", 42), ("text", ""), ("text", "   "), ("text", {"t": 1}), ("tickers", "TSLA"), ("tickers", {"a": 1}),
        ("tickers", [1, 2]), ("ts", True), ("author", 7), ("channel", "c" * 201), ("ts", None),
    ])
    return _good(**{field: value}).encode()


def _huge_text(r: random.Random) -> bytes:
    return _good(text="x" * r.randrange(2_001, 200_000)).encode()


def _binary(r: random.Random) -> bytes:
    return b"\xff" + r.randbytes(r.randrange(0, 400))  # 0xff never starts a UTF-8 character


def _odd_unicode(r: random.Random) -> bytes:
    body = "".join(r.choice(ODD) for _ in range(r.randrange(1, 20)))
    return r.choice([
        _good(text=body + chr(r.randrange(0, 9))),  # control characters
        _good(text=body + "\x7f"),
        json.dumps({**GOOD, "text": body + "\ud800"}),  # an unpaired surrogate, escaped as JSON allows
        json.dumps({**GOOD, "id": "\udfff" + body}),
        _good(text=body, source="néws"),
    ]).encode()


def _wrong_ts(r: random.Random) -> bytes:
    ts = r.choice([
        "2026-01-05T14:00:00", "2026-02-30T10:00:00Z", "2026-01-05T25:00:00Z", "yesterday", "", "2026-13-01",
        "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T00:00:00Z",
        "2099-01-01T00:00:00Z", "2026-01-05T14:00:00+25:00", "1e400",
        10**30, -(10**30), [2026, 1, 5], {"at": 0},
    ])
    return _good(ts=ts).encode()


def _missing(r: random.Random) -> bytes:
    gone = r.choice(list(GOOD))
    return json.dumps({k: v for k, v in GOOD.items() if k != gone}).encode()


CATEGORIES: dict[str, Callable[[random.Random], bytes]] = {
    "bad_json": _bad_json, "wrong_types": _wrong_types, "huge_text": _huge_text, "binary": _binary,
    "odd_unicode": _odd_unicode, "wrong_ts": _wrong_ts, "missing_field": _missing,
}
WEIGHTS = {"huge_text": 1}  # huge ones are few (bytes on a shared disk); the rest equally often


# as large as the broker takes (1 MB): the dead-letter record must still fit, however the payload is encoded
NEAR_LIMIT = [
    ("huge_text", _good(text="x" * 990_000).encode()),
    ("binary", b"\xff" * 990_000),  # not UTF-8: its dead letter holds no copy
    ("odd_unicode", b"\x01" * 990_000),  # valid UTF-8, but every byte a six-character JSON escape
]


def malformed(n: int, seed: int = 8) -> Iterator[tuple[str, bytes | None]]:
    """``n`` (category, payload) pairs; a few tombstones (``None`` values) and near-limit sizes among them."""
    r = random.Random(seed)
    names = list(CATEGORIES)
    weights = [WEIGHTS.get(c, 10) for c in names]
    for i in range(n):
        if i % 997 == 0:
            yield "tombstone", None
            continue
        if i % 3001 == 1:
            yield NEAR_LIMIT[i // 3001 % len(NEAR_LIMIT)]
            continue
        name = r.choices(names, weights)[0]
        yield name, CATEGORIES[name](r)


def test_generator_makes_only_invalid_messages_of_every_category() -> None:
    seen: Counter[str] = Counter()
    for name, payload in malformed(N_BAD):
        with pytest.raises(InvalidMessage):
            parse_message(payload, ScoringSettings())
        seen[name] += 1
    assert set(seen) == {*CATEGORIES, "tombstone"} and min(seen.values()) >= 10, seen
    assert list(malformed(50)) == list(malformed(50))  # deterministic


def test_ten_thousand_malformed_messages_are_all_dead_lettered(pipeline: Callable[..., Worker]) -> None:
    worker = pipeline()
    s = worker.settings
    prod = producer(s.kafka)
    sent: dict[tuple[str, int, int], bytes | None] = {}
    futures = []
    good_every = N_BAD // N_GOOD
    t0 = time.monotonic()
    for i, (_, payload) in enumerate(malformed(N_BAD)):
        topic = s.kafka.topic("news" if i % 2 else "chat")
        key = None if payload is not None else f"tombstone-{i}".encode()  # Kafka needs a key or a value
        futures.append((prod.send(topic, payload, key=key), payload))
        if i % good_every == good_every // 2:
            src = "chat" if i % 2 else "news"
            prod.send(s.kafka.topic(src), _good(id=f"fuzz-ok-{i}", source=src, text=f"Shares slip {i}").encode())
    prod.flush()
    for fut, payload in futures:
        meta = fut.get(timeout=60)
        sent[(meta.topic, meta.partition, meta.offset)] = payload
    prod.close()
    produced_s = time.monotonic() - t0

    # the inputs' committed offsets, not the dead letters read again and again (up to 1 GB each time)
    left = wait_for_pipeline(s, 240.0, interval_s=0.5)
    assert not any(left.values()) and worker.alive(), f"left {left}\n{worker.log_tail()}"
    took = time.monotonic() - t0
    print(f"\nfuzz: {N_BAD} malformed produced in {produced_s:.1f}s; all dead-lettered {took:.1f}s after the "
          f"first send: {N_BAD / took:,.0f} rejections/s (with {N_GOOD} valid messages interleaved)")

    dead = read_json(s.kafka, s.kafka.topic("dead-letter"))
    assert len(dead) == N_BAD
    for d in dead:
        assert d["reason"].strip() and d["stage"] == "validate", d["reason"]
        where = (d["topic"], d["partition"], d["offset"])
        assert where in sent, where
        # a masked copy of its first 16 kB (streams/pii.py), none for bytes that are not UTF-8: the whole
        # original stays at its offset
        original = sent.pop(where)
        assert d["payload"] == mask_payload(original, DEAD_LETTER_COPY_BYTES), where
        if original is not None and len(original) > DEAD_LETTER_COPY_BYTES:
            assert d["payload_truncated"] and d["payload_size"] == len(original), where
    assert not sent  # each malformed message dead-lettered exactly once

    scored = wait_for(s, "scored", N_GOOD, worker)
    assert sorted(r["id"] for r in scored) == sorted(f"fuzz-ok-{i}" for i in range(N_BAD)
                                                     if i % good_every == good_every // 2)
    m = worker.metrics()
    assert m['tonewatch_dead_letter_total{stage="validate"}'] == N_BAD
    assert worker.alive()
