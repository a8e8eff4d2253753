"""A hostile record on the alerts, subscriptions or model-events topic is skipped, logged and (alerts) counted;
it never raises out of the reader (#27, 6). Every reader replays its topic from the start or from its last
commit, so a record that raised would stop it again at every restart: a crash loop anyone who can write the
topic can cause."""

from __future__ import annotations

import json
import logging
from collections import namedtuple
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka.structs import TopicPartition

from models.retrain_triggers import follow_drift
from streams.control.rejects import InvalidRecord
from tests.unit.test_notifier_incidents import Producer
from tonewatch.core.settings import Settings
from tonewatch.notify.metrics import create_notifier_metrics
from tonewatch.notify.notifier import Notifier, parse_alert
from tonewatch.notify.store import fold_subscriptions
from tonewatch.notify.subscriptions import new_subscription

ALERT = {"id": "a1", "status": "firing", "dimension": "ticker", "key": "TSLA", "severity": "critical",
         "window": {"start": "2026-01-05T12:00:00Z"}}
DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads: RecursionError, which is no ValueError

HOSTILE_ALERTS = [
    None, b"", b"\xff\xfe", b"x", DEEP, b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, b'"a1"', b"[]", b"{}",
    json.dumps({**ALERT, "id": 7}).encode(),  # broke _finish's key=alert["id"].encode()
    json.dumps({**ALERT, "key": 7}).encode(),  # broke a ticker filter's key.upper()
    json.dumps({**ALERT, "severity": ["critical"]}).encode(),  # broke min_severity's dict lookup
    json.dumps({**ALERT, "status": None}).encode(),
    json.dumps({k: v for k, v in ALERT.items() if k != "dimension"}).encode(),
]


@pytest.mark.parametrize("value", HOSTILE_ALERTS, ids=range(len(HOSTILE_ALERTS)))
def test_a_hostile_alert_record_is_refused_with_a_short_reason(value: bytes | None) -> None:
    with pytest.raises(InvalidRecord) as refused:
        parse_alert(value)
    assert refused.value.reason and len(refused.value.reason) < 300 and "TSLA" not in refused.value.reason


def test_a_good_alert_is_read_whole() -> None:
    assert parse_alert(json.dumps(ALERT).encode()) == ALERT


def test_the_notifier_skips_logs_and_counts_hostile_alerts_and_queues_the_good_one(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = create_notifier_metrics()
    notifier = Notifier(Settings(), metrics, Producer())
    sub = new_subscription(kind="webhook", url="http://h/x", ticker="tsla", min_severity="warning")
    notifier.state.subs[sub.id] = sub
    tp = TopicPartition("alerts", 0)
    caplog.set_level(logging.WARNING, logger="tonewatch.notifier")
    for offset, value in enumerate([*HOSTILE_ALERTS, json.dumps(ALERT).encode()]):
        notifier.on_alert(tp, offset, value, 100.0)
    notifier.settle(100.0 + Settings().delivery.incident_settle_s)
    assert [[c["id"] for c in job.incident["children"]] for job in notifier.queues[sub.id]] == [["a1"]]
    assert list(notifier.tracker.owner) == ["a1"]
    assert metrics.registry.get_sample_value("tonewatch_notifier_skipped_alerts_total") == len(HOSTILE_ALERTS)
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == len(HOSTILE_ALERTS) and all("\n" not in m for m in skipped)
    assert notifier.seen[tp] == len(HOSTILE_ALERTS)  # every record counts as read: the commit moves past them


Record = namedtuple("Record", "partition offset key value")


def test_listing_subscriptions_skips_what_it_cannot_read() -> None:
    """``alerts subscriptions list`` folds the topic as the notifier does: a key that is not UTF-8 or a value
    nested too deeply for ``json`` used to raise out of it."""
    sub = new_subscription(kind="webhook", url="http://h/x", ticker="tsla")
    good = json.dumps(sub.model_dump(exclude_none=True)).encode()
    records = [Record(0, 0, b"\xff", good), Record(0, 1, b"s2", DEEP), Record(0, 2, sub.id.encode(), good),
               Record(0, 3, None, good), Record(0, 4, b"s3", b"\xff")]
    assert fold_subscriptions(records) == {sub.id: sub}


def test_following_drift_skips_hostile_model_events(caplog: pytest.LogCaptureFixture) -> None:
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    event = {"event": "drift", "model": "sentiment", "version": 1,
             "at": (t0 + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")}
    runs: list[Any] = []
    caplog.set_level(logging.WARNING)
    n = follow_drift([b"\xff", DEEP, None, json.dumps(event).encode()], "sentiment", runs.append, 0.0,
                     lambda e: None, clock=lambda: 1.0, wall=lambda: t0)
    assert n == 1 and runs == [event]
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 2  # a tombstone is not a bad record
