"""Topic records as store rows (tonewatch/store/rows.py): records built by the functions that publish them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.control.drift import DriftEvent
from streams.control.routing import ModelEvent
from streams.records import Scored
from streams.windows.alerts import alert_payload
from streams.windows.detector import ClosedWindow, Driver, Transition, Window, alert_id
from streams.windows.trends import trend_record
from tonewatch.notify.incidents import group_alerts
from tonewatch.store.errors import InvalidRecord
from tonewatch.store.rows import KINDS, event_key, timestamp, to_row

START = 1_764_547_200.0  # 2025-12-01T00:00:00Z
WINDOW_S = 60
DRIVER = Driver("m1", "Apple recalls every phone", "news", 0.97, ("AAPL",))


def _window(**over: Any) -> Window:
    return Window(**{"start": START, "count": 10, "negative": 4, "p_negative_sum": 3.9, "drivers": (DRIVER,),
                     "model_versions": {"sentiment": "3"}, "adjusted_sum": 3.5, **over})


def _trend() -> dict[str, Any]:
    return trend_record("ticker", "AAPL", ClosedWindow(_window(), baseline=0.1, alerting=True), WINDOW_S)


def _alert(status: str = "firing") -> dict[str, Any]:
    t = Transition(status, alert_id("ticker", "AAPL", START), _window(), baseline=0.1, score=4.25,  # type: ignore[arg-type]
                   severity="warning", reason="both")
    return json.loads(json.dumps(alert_payload(t, "ticker", "AAPL", WINDOW_S, 30)))


def _incident() -> dict[str, Any]:
    sector = {**_alert(), "id": alert_id("sector", "tech", START), "dimension": "sector", "key": "tech"}
    (record,) = group_alerts([_alert(), sector], gap_s=300, sectors={"AAPL": "tech"})
    return record


def _scored() -> dict[str, Any]:
    ts = datetime(2025, 12, 1, 23, 59, 59, 500000, tzinfo=UTC)
    sc = Scored(id="m1", source="news", ts=ts, text="Apple recalls every phone", tickers=("AAPL",),
                sectors=("tech",), sentiment="negative",
                sentiment_probs={"negative": 0.97, "neutral": 0.02, "positive": 0.01}, topic="Product",
                topic_probs={"Product": 0.8, "Earnings": 0.2}, model_versions={"sentiment": "3", "topic": "1"},
                scored_at=ts, inference_ms=2.0)
    return json.loads(sc.to_json())


def _model_event() -> dict[str, Any]:
    return ModelEvent.from_dict({"model": "sentiment", "version": 3, "event": "promoted", "reason": "gates passed",
                                 "at": "2025-12-01T10:00:00Z", "by": "ci@host"}).to_dict()


def test_a_trend_record_becomes_its_row() -> None:
    rec = _trend()
    row = to_row("trends", rec)
    assert row[:11] == ("ticker", "AAPL", datetime(2025, 12, 1, tzinfo=UTC), datetime(2025, 12, 1, 0, 1, tzinfo=UTC),
                        10, 4, 0.4, rec["corrected_share"], 0.1, rec["corrected_baseline"], None)
    assert json.loads(row[11]) == rec


def test_an_alert_payload_becomes_its_row() -> None:
    rec = _alert()
    row = to_row("alerts", rec)
    assert row[:9] == (rec["id"], "firing", "ticker", "AAPL", "warning", datetime(2025, 12, 1, tzinfo=UTC),
                       datetime(2025, 12, 1, 0, 1, tzinfo=UTC), 4.25, "both")
    assert json.loads(row[9]) == [{"message_id": "m1", "text": "Apple recalls every phone", "source": "news",
                                   "p_negative": 0.97, "tickers": ["AAPL"]}]
    assert json.loads(row[10]) == rec


def test_an_incident_version_becomes_its_row_with_the_tickers_it_is_about() -> None:
    rec = _incident()
    row = to_row("incidents", rec)
    assert row[:6] == (rec["id"], 1, "warning", "opened", ["AAPL"], datetime(2025, 12, 1, tzinfo=UTC))
    assert json.loads(row[6]) == rec


def test_a_scored_record_becomes_a_message_row() -> None:
    row = to_row("scored", _scored())
    assert row[:6] == ("m1", datetime(2025, 12, 1, 23, 59, 59, 500000, tzinfo=UTC), "news",
                       "Apple recalls every phone", "negative", 0.97)
    assert json.loads(row[6]) == {"sentiment": {"negative": 0.97, "neutral": 0.02, "positive": 0.01},
                                  "topic": {"Product": 0.8, "Earnings": 0.2}}
    assert row[7:10] == ("Product", ["AAPL"], ["tech"])
    assert json.loads(row[10]) == {"sentiment": "3", "topic": "1"}


def test_model_events_are_keyed_by_their_content() -> None:
    rec = _model_event()
    row = to_row("model_events", rec)
    assert row[1:5] == (datetime(2025, 12, 1, 10, tzinfo=UTC), "promoted", "sentiment", "3")
    assert json.loads(row[5]) == rec
    assert row[0] == event_key(dict(reversed(rec.items())))  # the same event whatever its field order
    assert row[0] != to_row("model_events", {**rec, "at": "2025-12-01T10:00:01Z"})[0]


def test_a_drift_event_keeps_a_non_numeric_version_and_its_own_kind_in_the_payload() -> None:
    rec = DriftEvent("sentiment", "v2-rc", "class_mix", 0.31, 500, 0.2).as_dict("")
    row = to_row("model_events", rec)
    assert row[1:5] == (None, "drift", "sentiment", "v2-rc")
    assert json.loads(row[5])["kind"] == "class_mix"


def test_epochs_and_iso_times_are_the_same_instant() -> None:
    expected = datetime(2025, 12, 1, tzinfo=UTC)
    assert timestamp(START, "t") == timestamp("2025-12-01T00:00:00Z", "t") == timestamp("2025-12-01T01:00+01:00",
                                                                                         "t") == expected
    assert timestamp("2025-12-01T01:00+01:00", "t").tzinfo == UTC


def _drop(rec: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != field}


@pytest.mark.parametrize(("kind", "make", "reason"), [
    ("trends", lambda: _drop(_trend(), "window_start"), "trends record: no 'window_start'"),
    ("trends", lambda: {**_trend(), "count": "10"}, "'count' must be a 32-bit integer"),
    ("trends", lambda: {**_trend(), "window_start": True}, "'window_start' must be an epoch or an ISO-8601 time"),
    ("alerts", lambda: _drop(_alert(), "id"), "alerts record: no 'id'"),
    ("alerts", lambda: {**_alert(), "window": "today"}, "'window' must be an object"),
    ("alerts", lambda: {**_alert(), "window": {"end": "2025-12-01T00:01:00Z"}}, "no 'window.start'"),
    ("alerts", lambda: {**_alert(), "score": float("nan")}, "'score' must be a finite number"),
    ("incidents", lambda: {**_incident(), "version": "1"}, "'version' must be a 32-bit integer"),
    ("incidents", lambda: _drop(_incident(), "id"), "incidents record: no 'id'"),
    ("scored", lambda: {**_scored(), "ts": "2025-12-01T10:00:00"}, "'ts' needs a timezone"),
    ("scored", lambda: {**_scored(), "ts": 1e20}, "'ts' is not a valid time"),
    ("scored", lambda: {**_scored(), "text": "bad\x00byte"}, "'text' contains a NUL character"),
    ("scored", lambda: {**_scored(), "text": "half \ud83d pair"}, "'text' is not valid Unicode"),
    ("scored", lambda: {**_scored(), "tickers": "AAPL"}, "'tickers' must be a list of strings"),
    ("scored", lambda: {**_scored(), "topic_probs": {"Product": float("inf")}}, "not representable as JSON"),
    ("scored", lambda: {**_scored(), "model_versions": {"x\x00": "1"}}, "jsonb cannot hold"),
    ("model_events", lambda: _drop(_model_event(), "model"), "model_events record: no 'model'"),
    ("model_events", lambda: {**_model_event(), "version": True}, "'version' must be an integer or a string"),
    ("model_events", lambda: {**_model_event(), "at": "yesterday"}, "'at' is not a valid time"),
])
def test_records_that_cannot_become_rows_are_refused_with_the_reason(kind: str, make: Any, reason: str) -> None:
    with pytest.raises(InvalidRecord) as exc:
        to_row(kind, make())
    assert reason in exc.value.reason


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul() -> None:
    row = to_row("scored", {**_scored(), "text": "see \\u0000 in the log"})
    assert row[3] == "see \\u0000 in the log"


def test_unknown_kinds_and_non_objects_are_refused() -> None:
    with pytest.raises(InvalidRecord, match="unknown kind 'trend'"):
        to_row("trend", _trend())
    with pytest.raises(InvalidRecord, match="expected a JSON object, got list"):
        to_row("trends", [_trend()])  # type: ignore[arg-type]
    assert set(KINDS) == {"trends", "alerts", "incidents", "scored", "model_events"}
