"""The sample feed and the alert filters/format that the CLI shows people."""

from __future__ import annotations

import json
from pathlib import Path

from streams.records import InvalidMessage, parse_message
from tonewatch.alerts_cli import format_alert, matches
from tonewatch.core.sections import ScoringSettings
from tonewatch.feed import MALFORMED, SURGE_TICKER, build_feed, write_feed

REPO = Path(__file__).resolve().parents[2]

ALERT = {
    "id": "abc", "status": "firing", "dimension": "ticker", "key": "TSLA", "severity": "critical",
    "negative_share": 0.8, "baseline": 0.1, "volume": 12, "score": 7.2, "at": "2026-01-05T14:24:08Z",
    "top_messages": [{"text": "Tesla recalls cars", "message_id": "m", "source": "news", "p_negative": 0.9}],
}


def test_committed_sample_feed_is_what_the_builder_makes(tmp_path: Path) -> None:
    out = tmp_path / "feed.jsonl"
    write_feed(out, build_feed(), MALFORMED)
    assert out.read_text() == (REPO / "data" / "sample_feed.jsonl").read_text()


def test_sample_feed_is_valid_except_the_malformed_examples() -> None:
    lines = (REPO / "data" / "sample_feed.jsonl").read_text().splitlines()
    bad = 0
    for line in lines:
        try:
            parse_message(line.encode(), ScoringSettings())
        except InvalidMessage:
            bad += 1
    assert bad == len(MALFORMED)


def test_sample_feed_surge_is_negative_and_concentrated() -> None:
    feed = build_feed()
    surge = [m for m in feed if SURGE_TICKER in m.get("tickers", []) and "14:24" <= m["ts"][11:16] < "14:28"]
    assert len(surge) > 40
    assert len({m["id"] for m in feed}) == len(feed)


def test_filters() -> None:
    assert matches(ALERT, "tsla", None, None)
    assert not matches(ALERT, "AAPL", None, None)
    assert not matches(ALERT, None, "Earnings", None)
    assert matches(ALERT, None, None, "critical")
    assert not matches({**ALERT, "severity": "warning"}, None, None, "critical")


def test_format_is_one_readable_line_plus_the_worst_message() -> None:
    text = format_alert(ALERT)
    assert "FIRING" in text and "ticker=TSLA" in text and "80% vs baseline 10%" in text
    assert 'e.g. "Tesla recalls cars"' in text
    assert "e.g." not in format_alert({**ALERT, "status": "resolved"})
    assert json.loads(json.dumps(ALERT)) == ALERT
