"""The sink's fast path for scored records (tonewatch/store/fast_rows.py) gives exactly the row the general
mapping gives, or leaves the record to it: it never writes a row the general mapping would refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.records import Scored
from tonewatch.perf.sink_bench import sink_records
from tonewatch.store.errors import InvalidRecord
from tonewatch.store.fast_rows import scored_row_from_json
from tonewatch.store.rows import Row, to_row

DROP = object()  # a variant's value that removes the field
JSON_COLUMNS = (6, 10)  # probs and model_versions: compared as JSON, since jsonb keeps values, not spelling


def _slow(raw: bytes) -> Row | None:
    try:
        return to_row("scored", pydantic_core.from_json(raw))
    except (InvalidRecord, ValueError):
        return None


def _same(fast: Row, slow: Row) -> bool:
    plain = all(fast[i] == slow[i] for i in range(len(slow)) if i not in JSON_COLUMNS)
    return plain and all(json.loads(fast[i]) == json.loads(slow[i]) for i in JSON_COLUMNS)


def _record(**over: Any) -> dict[str, Any]:
    ts = datetime(2026, 1, 5, 15, 4, 3, 232000, tzinfo=UTC)
    rec = json.loads(Scored(id="m1", source="chat", ts=ts, text="$TSLA puts printing 📉", tickers=("TSLA",),
                            sectors=("Consumer Discretionary",), sentiment="negative",
                            sentiment_probs={"negative": 0.91, "neutral": 0.06, "positive": 0.03},
                            topic="Stock Commentary", topic_probs={"Stock Commentary": 0.7, "Stock Movement": 0.3},
                            model_versions={"sentiment": "1", "topic": "1"}, scored_at=ts, inference_ms=2.0).to_json())
    rec.update(over)
    return {k: v for k, v in rec.items() if v is not DROP}


def test_the_workers_scored_records_take_the_fast_path_and_get_the_general_row() -> None:
    records = sink_records(200, "fast", datetime.now(UTC))["scored"] + [json.dumps(_record()).encode()]
    for raw in records:
        fast, slow = scored_row_from_json(raw), _slow(raw)
        assert fast is not None and slow is not None and _same(fast, slow), raw


VARIANTS = st.sampled_from([
    {}, {"id": ""}, {"id": 7}, {"id": DROP}, {"text": "a\x00b"}, {"text": ""}, {"ts": "2026-01-05T15:04:03"},
    {"ts": 1767625443.5}, {"ts": 1767625443}, {"ts": True}, {"ts": "yesterday"}, {"sentiment_probs": None},
    {"sentiment_probs": {"neutral": 1.0}}, {"sentiment_probs": {"negative": "high"}}, {"topic_probs": {"x\x00": 1.0}},
    {"topic_probs": {"a": [1, 2]}}, {"model_versions": {"sentiment": 2}}, {"model_versions": None},
    {"tickers": None}, {"tickers": ["T\x00"]}, {"tickers": [1]}, {"sectors": DROP}, {"extra": {"deep": [1]}},
    {"source": None}, {"topic": "é\u202e"},
])


@settings(max_examples=200, deadline=None)
@given(VARIANTS, VARIANTS, st.sampled_from(["", "1e999", "NaN", "\\ud800"]))
def test_a_record_either_gets_the_general_row_or_is_left_to_it(one: dict[str, Any], two: dict[str, Any],
                                                               number: str) -> None:
    raw = json.dumps(_record(**{**one, **two})).encode()
    if number:  # what json.dumps cannot write: a non-finite probability, an unpaired surrogate
        raw = raw.replace(b'"positive": 0.03', f'"positive": {number}'.encode() if number != "\\ud800"
                          else b'"positive": 0.03, "\\ud800": 1')
    fast, slow = scored_row_from_json(raw), _slow(raw)
    if fast is not None:
        assert slow is not None and _same(fast, slow), (one, two, number)
