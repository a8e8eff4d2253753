"""A message's text is anyone's: what Tonewatch prints or logs of it cannot move the cursor, clear the
screen, forge a log line or reverse what a terminal shows."""

from __future__ import annotations

import logging

import pytest

from streams.errors import dead_letter_record
from tonewatch.alerts_cli import format_alert

HOSTILE = "$TSLA \x1b[2J\x1b[31mcrash\r\nFORGED 2026 CRITICAL\u202eevil\u2066"


def _alert(text: str) -> dict[str, object]:
    return {"at": "2026-12-07T10:00:00Z", "status": "firing", "severity": "critical", "dimension": "ticker",
            "key": "TSLA", "negative_share": 0.8, "baseline": 0.2, "volume": 40, "score": 6.1, "id": "a1",
            "top_messages": [{"text": text}]}


def test_an_alert_line_shows_a_hostile_text_harmlessly() -> None:
    line = format_alert(_alert(HOSTILE))
    shown = line.split("e.g. ", 1)[1]
    assert all(c.isprintable() for c in shown), repr(shown)
    assert "crash" in shown and line.count("\n") == 1  # the alert's own line break only


def test_a_dead_letter_log_line_cannot_be_forged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.errors"):
        dead_letter_record(f"bad text: {HOSTILE}", b"{}", stage="validate", topic="chat", partition=0, offset=1)
    (message,) = [r.getMessage() for r in caplog.records]
    assert all(c.isprintable() for c in message), repr(message)
