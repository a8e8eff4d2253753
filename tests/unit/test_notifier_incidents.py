"""The notifier without a broker: the per-key alerts of one surge reach a subscriber as one incident that opens,
then updates; escalation and acks work on incidents (issue #28, 4)."""

from __future__ import annotations

import json
from typing import Any

from kafka.structs import TopicPartition

from tests.unit.test_incidents import SECTOR, SECTORS, SOURCE, TOPIC, TSLA
from tonewatch.core.settings import Settings
from tonewatch.notify.metrics import create_notifier_metrics
from tonewatch.notify.notifier import Notifier
from tonewatch.notify.state import delivery_entry
from tonewatch.notify.subscriptions import new_subscription
from tonewatch.notify.tracker import Tracker


class Producer:
    """What the notifier sends, by topic."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, json.loads(value)))

    def flush(self) -> None:
        pass


def _notifier(**delivery: Any) -> tuple[Notifier, Producer]:
    settings = Settings().updated(**{f"delivery__{k}": v for k, v in delivery.items()})
    producer = Producer()
    return Notifier(settings, create_notifier_metrics(), producer, Tracker(300.0, 5.0, SECTORS, 5)), producer


TPS = [TopicPartition("alerts", p) for p in range(4)]


def _read(n: Notifier, partition: int, offset: int, alert: dict[str, Any], now: float) -> None:
    n.on_alert(TPS[partition], offset, json.dumps(alert).encode(), now)


def test_four_alerts_of_one_surge_are_one_opened_notification_then_an_update() -> None:
    n, producer = _notifier()
    hook = new_subscription(kind="webhook", url="http://h/x")
    am = new_subscription(kind="alertmanager", url="http://am:9093")
    n.state.subs.update({hook.id: hook, am.id: am})
    for partition, (alert, now) in enumerate([(TSLA, 100.0), (SECTOR, 100.5), (TOPIC, 101.0)]):
        _read(n, partition, 0, alert, now)
    n.settle(104.9)
    assert not any(n.queues.values()) and producer.sent == []
    assert set(n.pending) == {(TPS[0], 0), (TPS[1], 0), (TPS[2], 0)}  # no offset moves past them yet
    n.settle(105.0)
    (opened,) = [job.incident for job in n.queues[hook.id]]
    assert (opened["status"], opened["version"], opened["headline"]) == ("opened", 1, "TSLA")
    assert [c["id"] for c in opened["children"]] == ["t-tsla", "t-sector", "t-topic"]
    assert [job.incident for job in n.queues[am.id]] == [opened]
    assert set(n.pending) == {(TPS[0], 0)}  # held by the queued deliveries, the others answered

    _read(n, 3, 0, SOURCE, 200.0)  # the source's alert, later
    n.settle(205.0)
    kinds = [(job.incident["status"], job.incident["version"]) for job in n.queues[hook.id]]
    assert kinds == [("opened", 1), ("updated", 2)]  # two notifications for four alerts
    update = n.queues[hook.id][1].incident
    assert [c["event"] for c in update["changes"]] == ["joined"] and update["severity"] == "critical"
    assert [(t, k, v["version"]) for t, k, v in producer.sent] == [
        ("tonewatch.incidents", opened["id"].encode(), 1), ("tonewatch.incidents", opened["id"].encode(), 2)]
    assert [job.key for job in n.queues[hook.id]] == [f"{hook.id}|{opened['id']}|v1|initial",
                                                      f"{hook.id}|{opened['id']}|v2|initial"]

    _read(n, 0, 0, TSLA, 300.0)  # a copy read again: offered as the published version, which is queued already
    assert len(n.queues[hook.id]) == 2
    assert n.metrics.registry.get_sample_value("tonewatch_deliveries_total",
                                               {"kind": "webhook", "outcome": "duplicate"}) == 1


def test_a_filtered_subscription_gets_the_incident_once_its_ticker_is_in_it() -> None:
    n, _ = _notifier()
    tsla = new_subscription(kind="webhook", url="http://h/x", ticker="tsla")
    n.state.subs[tsla.id] = tsla
    _read(n, 1, 0, SECTOR, 0.0)
    n.settle(5.0)
    assert not n.queues.get(tsla.id)
    _read(n, 0, 0, TSLA, 10.0)
    n.settle(15.0)
    assert [(j.incident["version"], j.incident["headline"]) for j in n.queues[tsla.id]] == [(2, "TSLA")]


def test_an_open_critical_incident_escalates_until_one_of_its_alerts_is_acked() -> None:
    n, _ = _notifier(escalation_interval_s=60.0)
    hook = new_subscription(kind="webhook", url="http://h/x")
    n.state.subs[hook.id] = hook
    for partition, alert in enumerate([TSLA, SECTOR, TOPIC]):
        _read(n, partition, 0, alert, 0.0)
    n.settle(5.0)
    (job,) = n.queues[hook.id]
    assert job.incident["severity"] == "critical"
    n.state.note_delivery(delivery_entry(job.key, hook.id, "webhook", job.incident, "initial", 5.0, 1))
    n.queues[hook.id].clear()
    n.queued.clear()
    n.escalate(64.0)
    assert not n.queues[hook.id]
    n.escalate(65.0)
    (esc,) = n.queues[hook.id]
    assert (esc.kind, esc.incident["escalation"], esc.key) == (
        "escalation-1", 1, f"{hook.id}|{job.incident['id']}|v1|escalation-1")
    n.queues[hook.id].clear()
    n.state.acks["t-sector"] = {"by": "ops"}  # an alert's id still acks: its incident stops escalating
    n.escalate(500.0)
    assert not n.queues[hook.id] and not n.state.notified
