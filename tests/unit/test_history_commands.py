"""The history commands (tonewatch/commands/store.py): durations, the table they print, and their refusal
without a store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from tonewatch.commands.store import parse_duration, table
from tonewatch.core.errors import InvalidInput


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", timedelta(minutes=30)), ("7d", timedelta(days=7)), ("12h", timedelta(hours=12)),
    ("2w", timedelta(weeks=2)), ("90s", timedelta(seconds=90)), (" 7D ", timedelta(days=7)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "0d", "-1d", "1.5h", "7x", "7d12h", "seven days"])
def test_what_is_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a duration"):
        parse_duration(text)


def test_a_table_aligns_columns_and_shows_hostile_text_harmlessly() -> None:
    out = table([{"key": "TSLA", "z": 5.0, "text": "crash\x1b[2J\r\nFORGED"}, {"key": "AAPL", "z": 12.25, "text": "x"}])
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0].split() == ["key", "z", "text"]
    assert lines[1].index("5") == lines[2].index("12.2") + 3  # numbers right-aligned
    assert all(c.isprintable() for c in out.replace("\n", ""))


def test_the_history_commands_refuse_without_a_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from tonewatch.cli import app

    monkeypatch.delenv("TONEWATCH_STORE__DSN", raising=False)
    for args in (["trends", "TSLA"], ["alerts", "history"], ["messages", "search", "recall"], ["sink"]):
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 2, (args, out.output)
        assert "error: no store configured (TONEWATCH_STORE__DSN, or run 'tonewatch up')" in out.output
