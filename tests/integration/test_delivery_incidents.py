"""Incidents end to end on a real Kafka broker and a real Alertmanager: the per-key alerts of one surge are one
notification to a webhook, and one group in Alertmanager (issue #28, 4). Fixtures and helpers: test_delivery."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration import test_delivery as base
from tests.integration.test_delivery import NotifierProc, Receiver, alert, cli, produce, until
from tonewatch.core.kafka_io import read_json
from tonewatch.core.settings import Settings

pytestmark = pytest.mark.integration
# test_delivery's fixtures, under their names here: a broker of this module's own, a prefix per test
kafka_settings, settings, receivers, notifier = base.kafka_settings, base.settings, base.receivers, base.notifier


def test_alertmanager_groups_an_incidents_alerts_and_they_end_when_resolved(
    settings: Settings, notifier: Callable[[Settings], NotifierProc], tmp_path: Path
) -> None:
    from tonewatch.stack.alertmanager import start_alertmanager, stop_alertmanager

    am = start_alertmanager(tmp_path / "am")
    try:
        cli(settings, "alerts", "subscribe", "--alertmanager", am.url)
        n = notifier(settings)

        def get(path: str) -> list[dict[str, Any]]:
            with urllib.request.urlopen(f"{am.url}/api/v2/{path}", timeout=5) as resp:
                return list(json.load(resp))

        def active() -> list[dict[str, Any]]:
            return sorted((x for x in get("alerts") if x["labels"].get("alert_id") in ("am-1", "am-2")),
                          key=lambda x: x["labels"]["alert_id"])

        # a ticker and its sector, driven by the same messages, on two partitions: one incident
        sector = alert("am-2", dimension="sector", key="Consumer Discretionary", severity="warning",
                       messages=("am-m1", "am-m2"))
        produce(settings, alert("am-1", messages=("am-m1",)), sector)
        until(lambda: len(active()) == 2, "the incident's two alerts in Alertmanager", log=n)
        got = active()[0]
        (incident,) = read_json(settings.kafka, settings.kafka.topic("incidents"))
        assert got["labels"] == {"alertname": "TonewatchNegativeSurge", "incident": incident["id"], "headline": "TSLA",
                                 "dimension": "ticker", "key": "TSLA", "severity": "critical", "alert_id": "am-1"}
        assert active()[1]["labels"]["incident"] == incident["id"]
        assert got["annotations"]["top_message"] == "TSLA plunges"
        assert got["status"]["state"] == "active"
        assert got["endsAt"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3600))  # held
        # Alertmanager's route groups by incident: one group, so one notification, for both alerts
        groups = [g for g in get("alerts/groups") if g["labels"].get("incident") == incident["id"]]
        assert [len(g["alerts"]) for g in groups] == [2]
        produce(settings, alert("am-1", status="resolved"), {**sector, "status": "resolved"})
        until(lambda: not active(), "the alerts to end in Alertmanager", log=n)
    finally:
        stop_alertmanager(am)


def test_the_alerts_of_one_surge_are_one_notification(
    settings: Settings, receivers: Callable[..., Receiver], notifier: Callable[[Settings], NotifierProc]
) -> None:
    hook = receivers()
    cli(settings, "alerts", "subscribe", "--webhook", hook.url)
    n = notifier(settings)
    shared = ("s-m1", "s-m2", "s-m3")
    surge = [alert("s-tsla", messages=shared), alert("s-sector", dimension="sector", key="Consumer Discretionary",
                                                    severity="warning", messages=shared[:2]),
             alert("s-topic", dimension="topic", key="recall", severity="warning", messages=shared[1:]),
             alert("s-source", dimension="source", key="news", severity="warning", messages=shared[2:])]
    produce(settings, *surge)
    until(lambda: len(hook.requests) >= 1, "the incident", log=n)
    time.sleep(3)
    (opened,) = hook.alerts()
    assert (opened["status"], opened["headline"], opened["severity"]) == ("opened", "TSLA", "critical")
    assert [c["id"] for c in opened["children"]] == ["s-tsla", "s-sector", "s-topic", "s-source"]
    listed = cli(settings, "alerts", "list")
    assert listed.splitlines()[0].split()[1:4] == ["OPENED", "critical", "TSLA"] and "sector=Consumer" in listed
    produce(settings, *({**a, "status": "resolved"} for a in surge))
    until(lambda: len(hook.requests) >= 2, "the resolved incident", log=n)
    time.sleep(3)
    assert [(d["id"], d["version"], d["status"]) for d in hook.alerts()] == [
        (opened["id"], 1, "opened"), (opened["id"], 2, "resolved")]  # two notifications for eight alert records
    assert cli(settings, "alerts", "list") == ""
    tailed = [json.loads(line) for line in cli(settings, "alerts", "tail", "--json").splitlines()]
    assert [(t["version"], t["status"]) for t in tailed] == [(1, "opened"), (2, "resolved")]
    assert len(cli(settings, "alerts", "tail", "--per-key").splitlines()) >= 8
