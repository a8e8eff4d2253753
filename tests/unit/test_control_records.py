"""A malformed control record is skipped, never raised: the worker's model-events follower, the rollout's
history and the notifier's state each build, from the good records around a bad one, the state they would
build without it (issue #27, item 6)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from models.rollout import events as rollout_events
from streams.control.model_events import EventFollower
from streams.control.rejects import preview
from streams.control.routing import InvalidEvent, fold, parse_event
from streams.metrics import PipelineMetrics, create_metrics
from tonewatch.core.settings import Settings
from tonewatch.notify.ledger import ledger_key
from tonewatch.notify.state import State, delivery_entry

SETTINGS = Settings().updated(kafka__bootstrap="127.0.0.1:1")


def _event(**fields: Any) -> bytes:
    return json.dumps({"model": "sentiment", "version": 2, "event": "promoted", **fields}).encode()


# what a foreign producer, a bug or an attacker can put on model-events
HOSTILE_EVENTS = [
    b"x", b"\xff\xfe", b"\xc3", b'"\xc3"', b'"x"', b"1", b"[]", b"{}", b"null", b"", None, b"[" * 5000,
    b'"\\ud800"', b'{"version": []}',
    _event(model=None), _event(model={}), _event(model=""), _event(model="m\n"), _event(model="\u202esent"),
    _event(version=True), _event(version=1.7), _event(version="2"), _event(version=-1), _event(version=2**64),
    b'{"model": "sentiment", "version": 1e400, "event": "promoted"}',
    b'{"model": "sentiment", "version": 1' + b"0" * 5000 + b', "event": "promoted"}',
    _event(event="exploded"), _event(event=None), _event(event=["promoted"]),
    _event(event="canary"), _event(event="canary", share=0), _event(event="canary", share=-0.1),
    _event(event="canary", share=1.5), _event(event="canary", share="0.5"), _event(event="canary", share=True),
    b'{"model": "sentiment", "version": 2, "event": "canary", "share": NaN}',
    b'{"model": "sentiment", "version": 2, "event": "canary", "share": Infinity}',
    _event(event="rolled_back", to="1"), _event(reason=["x"]), _event(at=1), _event(by={}),
]
GOOD_EVENTS = [_event(version=1), _event(event="canary", share=0.25)]


def _records(values: list[bytes | None]) -> list[SimpleNamespace]:
    return [SimpleNamespace(topic="tw.model-events", partition=0, offset=i, key=b"sentiment", value=v)
            for i, v in enumerate(values)]


def _dead_letters(metrics: PipelineMetrics, stage: str) -> float:
    return metrics.registry.get_sample_value("tonewatch_dead_letter_total", {"stage": stage}) or 0.0


@pytest.mark.parametrize("raw", HOSTILE_EVENTS)
def test_a_hostile_model_event_is_refused_with_a_reason(raw: bytes | None) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_event(raw)
    assert refused.value.reason and len(refused.value.reason) < 300
    follower = EventFollower(SETTINGS, create_metrics())
    assert follower.apply(raw) == refused.value.reason
    assert follower.routes() == {}


def test_good_model_events_around_bad_ones_give_the_same_routes_and_each_bad_one_is_dead_lettered() -> None:
    metrics, sent = create_metrics(), []

    async def dead_letter(key: bytes, value: bytes) -> None:
        sent.append((key, json.loads(value)))

    follower = EventFollower(SETTINGS, metrics, dead_letter=dead_letter)
    values = [GOOD_EVENTS[0], *HOSTILE_EVENTS, GOOD_EVENTS[1]]
    asyncio.run(follower.consume(_records(values)))
    assert follower.routes() == fold(parse_event(v) for v in GOOD_EVENTS)
    assert len(sent) == len(HOSTILE_EVENTS) == _dead_letters(metrics, "model-events")
    assert [doc["offset"] for _, doc in sent] == list(range(1, len(HOSTILE_EVENTS) + 1))
    assert {doc["stage"] for _, doc in sent} == {"model-events"}
    assert all(doc["reason"] and doc["topic"] == "tw.model-events" for _, doc in sent)

    asyncio.run(follower.consume(_records(values)))  # an agent restart replays the topic
    assert len(sent) == len(HOSTILE_EVENTS)  # dead-lettered once per worker, not once per replay


def test_a_failed_dead_letter_does_not_stop_routing() -> None:
    async def broken(key: bytes, value: bytes) -> None:
        raise ConnectionError("broker away")

    follower = EventFollower(SETTINGS, create_metrics(), dead_letter=broken)
    asyncio.run(follower.consume(_records([GOOD_EVENTS[0], b'"x"', GOOD_EVENTS[1]])))
    assert follower.routes() == fold(parse_event(v) for v in GOOD_EVENTS)


def test_rollout_history_skips_bad_model_events(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [GOOD_EVENTS[0], *HOSTILE_EVENTS, GOOD_EVENTS[1]]
    monkeypatch.setattr(rollout_events, "iter_topic", lambda *a, **kw: iter(_records(values)))
    assert rollout_events.history(SETTINGS) == [parse_event(v) for v in GOOD_EVENTS]
    assert rollout_events.current_routes(SETTINGS) == fold(parse_event(v) for v in GOOD_EVENTS)


def test_a_log_preview_is_short_and_printable() -> None:
    shown = preview("\x1b[31mfake\nlog line\u202e".encode() + b"\xff" + b"a" * 500)
    assert shown.isprintable() and len(shown) < 100 and "fake?log line" in shown


# --- the notifier's state topics ---------------------------------------------------------------------------
ALERT = {"id": "a1", "status": "firing", "dimension": "ticker", "key": "TSLA", "severity": "critical"}
KEY = ledger_key("s1", "a1", "firing", "initial")
ENTRY = delivery_entry(KEY, "s1", "webhook", ALERT, "initial", 50.0, 1)


def _delivery(**fields: Any) -> bytes:
    return json.dumps({**ENTRY, **fields}).encode()


HOSTILE_STATE = [
    *[("deliveries", b"k", v) for v in (b"\xff", b"x", b'"x"', b"[]", b"{}", b"[" * 5000, b'{"key": []}',
                                        _delivery(subscription=[]), _delivery(delivered_at="x"),
                                        _delivery(delivered_at=None), _delivery(kind="escalation-x"),
                                        _delivery(kind=7), _delivery(key=None), _delivery(status=1),
                                        b'{"key": "k", "status": "firing", "subscription": "s", "alert_id": "a1", '
                                        b'"kind": "initial", "delivered_at": NaN}')],
    ("deliveries", b"\xff", _delivery()),
    ("deliveries", None, _delivery()),
    *[("acks", k, v) for k, v in ((b"\xff", b"{}"), (b"a1", b"\xff"), (b"a1", b"x"), (b"a1", b"[" * 5000))],
    *[("alerts", b"a1", v) for v in (b"\xff", b"x", b"[" * 5000, b'"a1"', b'{"id": "a1"}',
                                     b'{"id": [], "status": "firing"}', b'{"id": "a1", "status": null}')],
    ("alerts", b"\xff", json.dumps(ALERT).encode()),
    *[("incidents", b"i1", json.dumps({"id": "i1", "version": 1, "status": "opened", "headline": "TSLA",
                                        "children": [ALERT], **bad}).encode())
      for bad in ({"version": 0}, {"version": "1"}, {"children": []}, {"children": [{**ALERT, "key": 7}]},
                  {"children": [{**ALERT, "window": {"start": 1}}]}, {"headline": None}, {"top_messages": {}})],
    ("incidents", b"i1", b"[" * 5000),
    ("subscriptions", b"\xff", b"{}"),
    ("subscriptions", b"s1", b"[" * 5000),
    ("subscriptions", b"s1", b"\xff"),
]


@pytest.mark.parametrize(("kind", "key", "value"), HOSTILE_STATE)
def test_a_hostile_state_record_is_skipped_with_a_reason(kind: str, key: bytes | None, value: bytes) -> None:
    state = State()
    reason = state.apply(kind, 0, 7, key, value)
    assert isinstance(reason, str) and reason and len(reason) < 300
    assert state == State()


def test_good_state_records_around_bad_ones_give_the_same_state() -> None:
    good = [
        ("alerts", 0, b"a1", json.dumps(ALERT).encode()),
        ("deliveries", 0, KEY.encode(), _delivery()),
        ("deliveries", 0, b"k2", _delivery(key="k2", kind="escalation-1", delivered_at=60)),
        ("acks", 0, b"a2", b'{"by": "ops"}'),
    ]
    expected, state = State(), State()
    for offset, (kind, partition, key, value) in enumerate(good):
        assert expected.apply(kind, partition, offset, key, value) is None
    for offset, (kind, key, value) in enumerate([(g[0], g[2], g[3]) for g in good] + HOSTILE_STATE):
        state.apply(kind, 0, offset, key, value)
    # the alert's good record must stay the newest one: bad ones come later but do not count
    assert state == expected
    assert state.notified[("s1", "a1")].sent == 1 and state.alerts["a1"][2] == ALERT
