"""Validation reasons are what an operator reads in the dead-letter topic: test them exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.enrich import extract_tickers, mask_pii
from streams.errors import dead_letter_record
from streams.records import InvalidMessage, parse_message
from tonewatch.core.sections import ScoringSettings

GOOD = {"id": "n1", "source": "news", "ts": "2026-01-05T14:00:00Z", "text": "$TSLA falls after recall"}


def raw(**overrides: object) -> bytes:
    return json.dumps({**GOOD, **overrides}).encode()


def test_valid_message_is_normalised() -> None:
    msg = parse_message(raw(tickers=["$tsla", " aapl "], ts="2026-01-05T15:00:00+01:00"), ScoringSettings())
    assert msg.tickers == ("TSLA", "AAPL")
    assert msg.ts.isoformat() == "2026-01-05T14:00:00+00:00"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty message"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"id": ', "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (raw(source="fax"), "invalid field 'source'"),
        (raw(ts="yesterday"), "invalid field 'ts'"),
        (raw(ts="2026-01-05T14:00:00"), "timestamp needs a timezone"),
        (raw(text=""), "invalid field 'text'"),
        (raw(text="x" * 2001), "text too long: 2001 > 2000"),
        (raw(text="bad\x00byte"), "control characters"),
        (raw(tickers="TSLA"), "tickers must be a list"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "id"}).encode(), "invalid field 'id'"),
    ],
)
def test_invalid_messages_have_clear_reasons(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_message(payload, ScoringSettings())
    assert reason in err.value.reason


def test_tickers_from_producer_then_cashtags_without_duplicates() -> None:
    got = extract_tickers("$TSLA and $aapl vs $TSLA, not $5 or US$", ("NVDA", "TSLA"), most=20)
    assert got == ("NVDA", "TSLA", "AAPL")


def test_pii_is_masked_but_market_numbers_are_kept() -> None:
    text = "DM @trader_joe or mail joe@ex.com, call +1 415-555-0134, acct 123456789012. $TSLA -12.5% on 2026-01-05"
    masked = mask_pii(text)
    for secret in ("trader_joe", "joe@ex.com", "555-0134", "123456789012"):
        assert secret not in masked
    assert "$TSLA -12.5% on 2026-01-05" in masked


def test_dead_letter_record_keeps_binary_payload_recoverable() -> None:
    rec = dead_letter_record("not UTF-8", b"\xff\x00", stage="validate", topic="t", partition=1, offset=7)
    assert rec["payload_encoding"] == "base64" and rec["payload"] == "/wA="
    assert (rec["topic"], rec["partition"], rec["offset"], rec["stage"]) == ("t", 1, 7, "validate")


def test_company_names_map_to_tickers_and_sectors(tmp_path: Path) -> None:
    from streams.knowledge import load_knowledge

    k = load_knowledge()
    assert k.tickers_in("Goldman Sachs cuts Tesla target; AT&T and Ford Motor rise") == ["GS", "TSLA", "T", "F"]
    assert k.tickers_in("Metallica plays Intelligence conference") == []  # whole words only
    named = k.tickers_in("Tesla recall")
    assert extract_tickers("Tesla recall hits $TSLA", ("NVDA",), named, most=20) == ("NVDA", "TSLA")
    assert k.sector("TSLA") == "Consumer Discretionary" and k.sector("NOPE") is None
    custom = tmp_path / "map.csv"
    custom.write_text("ticker,sector,aliases\nACME,Industrials,Acme Corp|Acme\n")
    assert load_knowledge(custom).tickers_in("Acme Corp beats") == ["ACME"]


def test_scored_record_is_the_documented_json() -> None:
    """Downstream readers (reports, tests, dashboards' consumers) parse these exact fields."""
    from datetime import UTC, datetime

    from streams.records import Scored

    ts = datetime(2026, 11, 24, 4, 16, 28, 469012, tzinfo=UTC)
    sc = Scored(id="m1", source="news", ts=ts, text="Apple falls", tickers=("AAPL",), sentiment="negative",
                sentiment_probs={"negative": 0.9, "neutral": 0.05, "positive": 0.05}, topic="Earnings",
                topic_probs={"Earnings": 1.0}, model_versions={"sentiment": "1", "topic": "2"}, scored_at=ts,
                inference_ms=1.5)
    assert sc.to_json() == (
        b'{"id":"m1","source":"news","ts":"2026-11-24T04:16:28.469012Z","text":"Apple falls","tickers":["AAPL"],'
        b'"sectors":[],"sentiment":"negative","sentiment_probs":{"negative":0.9,"neutral":0.05,"positive":0.05},'
        b'"topic":"Earnings","topic_probs":{"Earnings":1.0},"model_versions":{"sentiment":"1","topic":"2"},'
        b'"candidate":{},"scored_at":"2026-11-24T04:16:28.469012Z","inference_ms":1.5}'
    )
    assert sc.p_negative == 0.9


def test_tickers_are_capped_and_restricted_to_symbol_characters() -> None:
    limits = ScoringSettings(max_tickers=3)
    with pytest.raises(InvalidMessage, match="4 tickers: at most 3"):
        parse_message(raw(tickers=["A", "B", "C", "D"]), limits)
    with pytest.raises(InvalidMessage, match="only A-Z, 0-9"):
        parse_message(raw(tickers=["BRK.B", "TS@LA"]), limits)
    assert parse_message(raw(tickers=["brk.b", "RDS-A"]), limits).tickers == ("BRK.B", "RDS-A")
    assert parse_message(raw(tickers=["BWV $AUVI $DTC"]), limits).tickers == ("BWV", "AUVI", "DTC")
    stuffed = " ".join(f"${chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(300))
    assert len(extract_tickers(stuffed, (), most=20)) == 20  # cashtags in the text cannot make 300 keys


def test_bidi_controls_in_names_are_refused() -> None:
    with pytest.raises(InvalidMessage, match="bidirectional"):
        parse_message(raw(id="evil\u202egnp.exe"), ScoringSettings())
