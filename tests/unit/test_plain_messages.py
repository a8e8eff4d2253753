"""The msgspec fast path accepts only what pydantic would accept, and gives the same message: it is a shortcut,
never a second set of rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.records import Message, MessageSchema, decode_plain

GOOD: dict[str, Any] = {"id": "n1", "source": "news", "ts": "2026-01-05T14:00:00Z", "text": "$TSLA falls after recall"}

padded = st.builds(lambda pad, core, end: pad + core + end, st.sampled_from(["", " ", "\t", "\x1c", "\u00a0"]),
                   st.text(max_size=12), st.sampled_from(["", " ", "\n", "\u2003", "\x1f"]))
stamps = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.builds(lambda d, sep, frac, tz: d.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + tz,
              st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
              st.sampled_from(["T", "t", " "]), st.sampled_from(["", ".5", ".123456", ".1234567", ".123456789"]),
              st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "+23:59", "+24:00", "-14:00", "+0530", "",
                               "+05"])),
    st.sampled_from(["2026-02-30T00:00:00Z", "2026-12-31T23:59:60Z", "2026-01-05T24:00:00Z",
                     "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "20260105T140000Z", "2026-01-05",
                     "1700000000"]),
    st.integers(-10**12, 10**12), st.floats(allow_nan=False),
)
tickers = st.none() | st.lists(st.text(max_size=8) | st.sampled_from(["tsla", "BWV $AUVI", "brk.b", "X" * 17]),
                                max_size=3) | st.integers()
FIELDS = {"id": padded | st.text(max_size=140), "source": st.sampled_from(["news", "chat", "NEWS", ""]),
          "ts": stamps, "text": padded, "tickers": tickers, "author": st.none() | padded | st.text(max_size=210),
          "channel": st.none() | padded, "extra": st.integers() | st.text(max_size=4)}


def assert_same_as_pydantic(raw: bytes | str) -> Message | None:
    plain = decode_plain(raw)
    if plain is not None:
        checked = MessageSchema.model_validate_json(raw).message()  # raises if pydantic refuses it
        assert checked == plain, raw
        assert checked.ts.isoformat() == plain.ts.isoformat(), raw
    return plain


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.fixed_dictionaries({}, optional=FIELDS), drop=st.sets(st.sampled_from(list(GOOD))),
       ascii_only=st.booleans())
@example(changes={"ts": "2026-01-05T14:00:00.1234567Z"}, drop=set(), ascii_only=True)
@example(changes={"id": " n1"}, drop=set(), ascii_only=True)
@example(changes={"tickers": ["tsla", "BWV $AUVI"]}, drop=set(), ascii_only=True)
@example(changes={"author": "x" * 201}, drop=set(), ascii_only=True)
def test_the_fast_path_agrees_with_pydantic(changes: dict[str, Any], drop: set[str], ascii_only: bool) -> None:
    doc = {k: v for k, v in {**GOOD, **changes}.items() if k not in drop or k in changes}
    assert_same_as_pydantic(json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


@given(st.binary(max_size=200))
def test_arbitrary_bytes(raw: bytes) -> None:
    assert_same_as_pydantic(raw)


def test_the_common_case_takes_the_fast_path() -> None:
    msg = assert_same_as_pydantic(json.dumps({**GOOD, "ts": "2026-01-05T15:30:00.25+01:30", "tickers": ["tsla", "X Y"],
                                              "author": "ann", "channel": None}))
    assert msg is not None
    assert msg.ts == datetime(2026, 1, 5, 14, 0, 0, 250000, tzinfo=UTC) and msg.ts.tzinfo is UTC
    assert msg.tickers == ("TSLA", "X", "Y")


def test_what_pydantic_would_change_is_left_to_pydantic() -> None:
    for change in ({"text": " padded"}, {"ts": "2026-01-05 14:00:00Z"}, {"ts": 1767621600}, {"id": "x" * 129}):
        assert decode_plain(json.dumps({**GOOD, **change})) is None, change
