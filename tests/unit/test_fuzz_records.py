"""Property tests of the one validation gate: any input either becomes a sound Message or a clear reason,
and the reason's dead-letter record always fits the dead-letter topic.

A worker survives bad input only if ``parse_message`` never raises anything but ``InvalidMessage``
and never lets through a message that breaks a later stage (serialising, keying, windowing).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.errors import MAX_PAYLOAD_BYTES, dead_letter_record
from streams.records import InvalidMessage, Message, parse_message
from tonewatch.core.sections import ScoringSettings

MAX_TEXT = 200
LIMITS = ScoringSettings(max_text_chars=MAX_TEXT)
GOOD: dict[str, Any] = {"id": "n1", "source": "news", "ts": "2026-01-05T14:00:00Z", "text": "$TSLA falls after recall"}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
odd_text = st.text(
    st.characters(codec=None, exclude_categories=()), max_size=60,  # surrogates, controls, RTL marks, emoji
)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))  # ISO: whole minutes
timestamps = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["", "now", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                     "2026-01-05T14:00:00", "1e30", "-1", "9999999999999999999"]),
    st.integers(), st.floats(), st.booleans(),
)


def check(raw: bytes | str | None) -> Message | None:
    """Parse, and hold the result to the contract: a sound message or an InvalidMessage with a reason."""
    try:
        msg = parse_message(raw, LIMITS)
    except InvalidMessage as exc:
        assert isinstance(exc.reason, str) and exc.reason.strip(), repr(raw)
        return None
    assert 1 <= len(msg.id) <= 128 and msg.id == msg.id.strip()
    assert msg.source in ("news", "chat")
    assert msg.ts.tzinfo is not None and msg.ts.utcoffset() == UTC.utcoffset(None)
    assert 1 <= len(msg.text) <= MAX_TEXT
    assert all(isinstance(t, str) and t and t == t.strip().upper() for t in msg.tickers)
    msg.id.encode("utf-8")  # the scored topic's key
    msgspec.json.encode(msg)  # what the scored record is built from
    assert isinstance(msg.epoch, float)
    return msg


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
@example(b"\xff\xfe not utf-8")
@example(b"[" * 100_000)
@example(b"1" * 5_000)
@example(b'{"a": ' * 3_000)
def test_arbitrary_bytes_never_escape_the_contract(raw: bytes) -> None:
    check(raw)


@settings(max_examples=400)
@given(json_values)
def test_arbitrary_json_documents_are_rejected_with_a_reason(value: Any) -> None:
    assert check(json.dumps(value).encode()) is None  # none of these has every required field right


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(["id", "source", "ts", "text", "tickers", "author", "channel"]),
    value=json_values | odd_text | timestamps,
)
@example(field="ts", value="0001-01-01T00:00:00+01:00")
@example(field="ts", value="9999-12-31T23:59:59-01:00")
@example(field="tickers", value=[{"a": 1}, [2], 3.5])
@example(field="tickers", value=["x" * 1_000])
@example(field="id", value="\ud800")
@example(field="text", value="falls \udfff")
def test_one_wrong_field_is_caught_or_harmless(field: str, value: Any) -> None:
    check(json.dumps({**GOOD, field: value}))


@settings(max_examples=300)
@given(text=odd_text, ts=timestamps)
def test_odd_unicode_and_timestamps(text: str, ts: Any) -> None:
    check(json.dumps({**GOOD, "text": text, "ts": ts}, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@settings(max_examples=300)
@given(
    id_=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    source=st.sampled_from(["news", "chat"]),
    when=st.datetimes(max_value=datetime(2026, 1, 1), timezones=OFFSETS).filter(
        lambda d: d.year > 1),  # year 1 minus an offset has no UTC time
    text=st.text(st.characters(categories=["L", "N", "P", "Zs", "So"]), min_size=1, max_size=MAX_TEXT).filter(
        lambda t: t.strip() == t and t != ""),
    tickers=st.lists(st.from_regex(r"[A-Z]{1,5}", fullmatch=True), max_size=3),
)
def test_valid_messages_are_accepted_unchanged(
    id_: str, source: str, when: Any, text: str, tickers: list[str]
) -> None:
    raw = json.dumps({"id": id_, "source": source, "ts": when.isoformat(), "text": text, "tickers": tickers})
    msg = check(raw.encode())
    assert msg is not None, raw
    assert (msg.id, msg.source, msg.text, list(msg.tickers)) == (id_, source, text, tickers)
    assert msg.ts == when


def test_huge_text_is_rejected_not_scored() -> None:
    raw = json.dumps({**GOOD, "text": "x" * 5_000_000}).encode()
    assert check(raw) is None


@pytest.mark.parametrize("payload", [b"\x01" * 1_000_000, b"\xff" * 1_000_000, "x" * 1_000_000, b'"' * 1_000_000])
def test_a_dead_letter_record_fits_one_kafka_message_whatever_the_payload(payload: bytes | str) -> None:
    rec = dead_letter_record("not JSON", payload, stage="validate", topic="t", partition=0, offset=1)
    assert len(json.dumps(rec, separators=(",", ":")).encode()) < 1_000_000  # the broker's default is 1 MB
    assert rec["payload_truncated"] and rec["payload_size"] == len(payload)
    kept = base64.b64decode(rec["payload"]) if rec["payload_encoding"] == "base64" else rec["payload"]
    assert kept == (payload[:MAX_PAYLOAD_BYTES] if isinstance(payload, str) else
                    payload[:MAX_PAYLOAD_BYTES].decode() if rec["payload_encoding"] == "utf-8" else
                    payload[:MAX_PAYLOAD_BYTES])


@given(st.binary(max_size=2_000) | st.none())
def test_small_payloads_are_kept_whole_and_recoverable(payload: bytes | None) -> None:
    rec = dead_letter_record("r", payload, stage="validate")
    assert "payload_truncated" not in rec
    if payload is None:
        assert rec["payload"] is None
    elif rec["payload_encoding"] == "base64":
        assert base64.b64decode(rec["payload"]) == payload
    else:
        assert rec["payload"].encode() == payload


def test_a_future_timestamp_is_refused_before_it_moves_its_partition_time() -> None:
    now = datetime(2026, 1, 5, 14, tzinfo=UTC).timestamp()
    ok = parse_message(json.dumps({**GOOD, "ts": "2026-01-05T14:00:20Z"}), LIMITS, now=now)
    assert ok.ts.second == 20  # a producer clock 20 s ahead: tolerated
    with pytest.raises(InvalidMessage, match="more than 30s in the future"):
        parse_message(json.dumps({**GOOD, "ts": "2026-01-10T14:00:00Z"}), LIMITS, now=now)
