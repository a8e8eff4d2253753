"""Personal data in chat never reaches a log line or a dead-letter reason (the worker test covers topics)."""

from __future__ import annotations

import json
import logging

import pytest

from streams.enrich import mask_pii
from streams.errors import dead_letter_record
from streams.records import InvalidMessage, parse_message
from tonewatch.core.sections import ScoringSettings

PII = ["jane.doe@example.com", "+1 415 555 0134", "(212) 555-0199", "212.555.0199", "123456789012", "@trader_joe"]
TEXT = "sell now " + " and ".join(PII)


@pytest.mark.parametrize("pii", PII)
def test_mask_pii_masks_every_kind(pii: str) -> None:
    masked = mask_pii(f"call {pii} today about $TSLA")
    assert pii not in masked and "$TSLA" in masked and "<" in masked


def test_mask_pii_keeps_prices_dates_and_cashtags() -> None:
    text = "$AAPL up 3.5% to 189.20 on 2026-01-05, volume 1,234,567"
    assert mask_pii(text) == text


BROKEN = [
    {"id": "c1", "source": "chat", "text": TEXT},  # no ts
    {"id": "c2", "source": "sms", "ts": "2026-01-05T14:03:00Z", "text": TEXT},
    {"id": "c3", "source": "chat", "ts": "yesterday", "text": TEXT},
    {"id": "c4", "source": "chat", "ts": "2026-01-05T14:03:00", "text": TEXT},  # no timezone
    {"id": "c5", "source": "chat", "ts": "2026-01-05T14:03:00Z", "text": TEXT + "\x07"},
    {"id": "c6", "source": "chat", "ts": "2026-01-05T14:03:00Z", "text": TEXT * 50},
    {"id": "c7", "source": "chat", "ts": "2026-01-05T14:03:00Z", "text": TEXT, "tickers": TEXT},
]


@pytest.mark.parametrize("raw", BROKEN, ids=[b["id"] for b in BROKEN])
def test_dead_letter_reason_and_log_line_carry_no_pii(raw: dict[str, object], caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_message(json.dumps(raw), ScoringSettings(max_text_chars=500))
    with caplog.at_level(logging.DEBUG):
        record = dead_letter_record(err.value.reason, json.dumps(raw).encode(), stage="validate", topic="t.chat")
    logged = caplog.text
    assert logged and err.value.reason in logged
    for pii in PII:
        assert pii not in err.value.reason and pii not in logged and pii not in record["reason"]
