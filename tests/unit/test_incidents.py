"""Alerts that share a cause become one incident (issue #28, 4): the pure grouping and the notifier's tracker."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tonewatch.notify.incidents import group_alerts, iso
from tonewatch.notify.state import State
from tonewatch.notify.tracker import Tracker

T0 = 1_767_600_000.0  # a window start; 60 s windows
SECTORS = {"TSLA": "Consumer Discretionary", "AAPL": "Information Technology", "MSFT": "Information Technology",
           "F": "Consumer Discretionary"}
GAP, SETTLE = 300.0, 5.0


def alert(aid: str, dimension: str, key: str, msgs: tuple[str, ...], *, start: float = T0, status: str = "firing",
          severity: str = "warning", volume: int = 20) -> dict[str, Any]:
    return {"id": aid, "status": status, "dimension": dimension, "key": key, "severity": severity,
            "window": {"start": iso(start), "end": iso(start + 60), "seconds": 60}, "volume": volume,
            "score": 5.0, "at": iso(start + 180),
            "top_messages": [{"message_id": m, "text": f"text {m}", "source": "news", "p_negative": 0.9}
                             for m in msgs]}


# one surge on TSLA: the ticker, its sector (no shared top message: related as its sector), a topic and a source
TSLA = alert("t-tsla", "ticker", "TSLA", ("m1", "m2", "m3"), volume=40)
SECTOR = alert("t-sector", "sector", "Consumer Discretionary", ("o1", "o2"), volume=60)
TOPIC = alert("t-topic", "topic", "recall", ("m2", "o3"), start=T0 + 60, volume=30)
SOURCE = alert("t-source", "source", "news", ("m3", "o4"), volume=300)
# another at the same time on AAPL, whose chat surge shares its messages
AAPL = alert("a-aapl", "ticker", "AAPL", ("n1", "n2"), severity="critical", volume=25)
CHAT = alert("a-chat", "source", "chat", ("n2", "o5"), volume=90)


def summary(records: list[dict[str, Any]]) -> list[tuple[str, str, str, str, list[str]]]:
    return sorted((r["id"], r["headline"], r["severity"], r["status"], [c["id"] for c in r["children"]])
                  for r in records)


def tracked(alerts: list[dict[str, Any]], tracker: Tracker | None = None) -> list[dict[str, Any]]:
    """Every alert read at once (a replay's interleaving), then the versions once they settle."""
    t = tracker or Tracker(GAP, SETTLE, SECTORS, 5)
    for a in alerts:
        assert t.add(a, 0.0) is None
    return [r for r, _ in t.due(SETTLE)]


def test_a_ticker_its_sector_topic_and_source_are_one_incident() -> None:
    (inc,) = group_alerts([SOURCE, TOPIC, SECTOR, TSLA], GAP, SECTORS)
    assert inc["headline"] == "TSLA" and inc["root"] == {"dimension": "ticker", "key": "TSLA", "alert_id": "t-tsla"}
    assert [c["id"] for c in inc["children"]] == ["t-tsla", "t-sector", "t-topic", "t-source"]
    assert inc["severity"] == "critical"  # four dimensions: breadth makes it critical
    assert inc["status"] == "opened" and inc["version"] == 1
    assert inc["window"] == {"start": iso(T0), "end": iso(T0 + 120)}
    assert [m["message_id"] for m in inc["top_messages"]] == ["m1", "m2", "m3", "o1", "o2"]  # each once, at most 5


def test_every_arrival_order_gives_the_same_incidents() -> None:
    five = [TSLA, SECTOR, TOPIC, AAPL, CHAT]
    expected = summary(group_alerts(five, GAP, SECTORS))
    assert sorted((h, kids) for _, h, _, _, kids in expected) == [("AAPL", ["a-aapl", "a-chat"]),
                                                                  ("TSLA", ["t-tsla", "t-sector", "t-topic"])]
    for order in itertools.permutations(five):
        assert summary(group_alerts(order, GAP, SECTORS)) == expected
        assert summary(tracked(list(order))) == expected


def test_two_simultaneous_surges_in_different_sectors_are_two_incidents() -> None:
    it = alert("a-sector", "sector", "Information Technology", ("n1",))
    incidents = group_alerts([TSLA, SECTOR, AAPL, it], GAP, SECTORS)
    assert sorted((r["headline"], len(r["children"])) for r in incidents) == [("AAPL", 2), ("TSLA", 2)]
    assert len({r["id"] for r in incidents}) == 2


def test_two_tickers_of_one_sector_without_shared_messages_stay_apart() -> None:
    """Their sector's alert joins the one it shares the most driving messages with."""
    msft = alert("a-msft", "ticker", "MSFT", ("k1", "k2"))
    it = alert("a-sector", "sector", "Information Technology", ("k1", "k2", "n9"))
    by_head = {r["headline"]: [c["id"] for c in r["children"]] for r in group_alerts([AAPL, msft, it], GAP, SECTORS)}
    assert by_head == {"AAPL": ["a-aapl"], "MSFT": ["a-msft", "a-sector"]}


def test_two_tickers_named_by_the_same_messages_are_one_incident_headed_by_the_larger() -> None:
    ford = alert("t-f", "ticker", "F", ("m1", "m2"), volume=55)
    (inc,) = group_alerts([TSLA, ford], GAP, SECTORS)
    assert inc["headline"] == "F"


def test_alerts_further_apart_than_the_gap_are_separate_incidents() -> None:
    later = alert("t-sector-late", "sector", "Consumer Discretionary", ("m1",), start=T0 + GAP + 60)
    assert len(group_alerts([TSLA, later], GAP, SECTORS)) == 2
    assert len(group_alerts([TSLA, later], GAP + 60, SECTORS)) == 1


def test_a_child_that_joins_later_updates_the_incident_under_the_same_id() -> None:
    t = Tracker(GAP, SETTLE, SECTORS, 5)
    (opened,) = tracked([TSLA], t)
    assert opened["status"] == "opened" and opened["severity"] == "warning"
    assert t.add(TOPIC, 100.0) is None
    assert t.due(100.0 + SETTLE - 0.1) == []  # it settles first
    assert t.add(SOURCE, 101.0) is None
    (update, answers), = t.due(100.0 + SETTLE)
    assert (update["id"], update["version"], update["status"]) == (opened["id"], 2, "updated")
    assert [c["event"] + ":" + c["alert_id"] for c in update["changes"]] == ["joined:t-topic", "joined:t-source"]
    assert update["severity"] == "critical" and update["former_severities"] == ["warning"]  # three dimensions
    assert sorted(answers) == ["t-source", "t-topic"]


def test_a_ticker_after_its_sector_becomes_the_headline_and_the_id_stays() -> None:
    t = Tracker(GAP, SETTLE, SECTORS, 5)
    (opened,) = tracked([SECTOR], t)
    assert opened["headline"] == "Consumer Discretionary"
    t.add(TSLA, 50.0)
    (update, _), = t.due(50.0 + SETTLE)
    assert update["id"] == opened["id"] and update["headline"] == "TSLA"
    assert update["former_headlines"] == ["Consumer Discretionary"]


def test_the_incident_resolves_when_every_child_has() -> None:
    t = Tracker(GAP, SETTLE, SECTORS, 5)
    (opened,) = tracked([TSLA, SECTOR], t)
    t.add({**TSLA, "status": "resolved"}, 10.0)
    (half, _), = t.due(10.0 + SETTLE)
    assert half["status"] == "updated" and [c["status"] for c in half["children"]] == ["resolved", "firing"]
    t.add({**SECTOR, "status": "resolved"}, 20.0)
    t.add({**TSLA, "status": "firing"}, 20.0)  # an old copy read again changes nothing
    (done, _), = t.due(20.0 + SETTLE)
    assert (done["id"], done["version"], done["status"]) == (opened["id"], 3, "resolved")


def test_an_alert_that_fired_and_resolved_while_settling_is_opened_then_resolved() -> None:
    t = Tracker(GAP, SETTLE, SECTORS, 5)
    t.add(TSLA, 0.0)
    t.add({**TSLA, "status": "resolved"}, 1.0)
    opened, resolved = t.due(SETTLE)
    assert (opened[0]["status"], resolved[0]["status"]) == ("opened", "resolved")
    assert (opened[1], resolved[1]) == ([], ["t-tsla"])  # the records are answered by the last version


def test_a_restarted_tracker_keeps_ids_and_versions_and_answers_copies_with_the_published_record() -> None:
    first = Tracker(GAP, SETTLE, SECTORS, 5)
    (opened,) = tracked([TSLA, SECTOR], first)
    state = State()  # as the notifier reads the incidents topic at start
    assert state.apply("incidents", 0, 0, opened["id"].encode(), json.dumps(opened).encode()) is None
    again = Tracker(GAP, SETTLE, SECTORS, 5)
    again.restore(state.incidents.values())
    assert again.add(TSLA, 0.0) == opened  # read again after a crash: delivered unless the ledger has it
    again.add(TOPIC, 0.0)
    (update, _), = again.due(SETTLE)
    assert (update["id"], update["version"]) == (opened["id"], 2)
    assert [c["id"] for c in update["children"]] == ["t-tsla", "t-sector", "t-topic"]


def test_an_alert_that_joins_and_resolves_while_settling_is_shown_firing_first() -> None:
    t = Tracker(GAP, SETTLE, SECTORS, 5)
    (opened,) = tracked([TSLA], t)
    t.add(SECTOR, 10.0)
    t.add({**SECTOR, "status": "resolved"}, 11.0)
    joined, resolved = t.due(10.0 + SETTLE)
    assert [(c["id"], c["status"]) for c in joined[0]["children"]] == [("t-tsla", "firing"), ("t-sector", "firing")]
    assert [c["event"] for c in resolved[0]["changes"]] == ["resolved"]
    assert (joined[0]["version"], resolved[0]["version"], resolved[0]["status"]) == (2, 3, "updated")
    assert joined[0]["id"] == resolved[0]["id"] == opened["id"]
    assert (joined[1], resolved[1]) == ([], ["t-sector", "t-sector"])


def about(a: dict[str, Any], tickers: dict[str, list[str]]) -> dict[str, Any]:
    """The alert with each driving message's tickers (what the worker writes since drivers carry them)."""
    return {**a, "top_messages": [{**m, "tickers": tickers.get(m["message_id"], [])} for m in a["top_messages"]]}


def test_a_broad_key_whose_later_window_is_driven_by_the_ticker_joins_its_incident() -> None:
    # the demo's shape: TSLA fires on its first surge window; chat and its topic reach their bar three windows
    # later, driven by other TSLA messages (and one about WMT): no message in common, the same cause
    tsla = about(TSLA, {"m1": ["TSLA"], "m2": ["TSLA"], "m3": ["TSLA"]})
    chat = about(alert("c-chat", "source", "chat", ("c1", "c2", "c3"), start=T0 + 180, volume=25),
                 {"c1": ["TSLA"], "c2": ["WMT"], "c3": ["TSLA"]})
    topic = about(alert("c-topic", "topic", "Stock Commentary", ("c1", "c4"), start=T0 + 180), {"c4": ["TSLA"]})
    (inc,) = group_alerts([chat, topic, tsla], GAP, SECTORS)
    assert inc["headline"] == "TSLA" and [c["id"] for c in inc["children"]] == ["t-tsla", "c-topic", "c-chat"]
    assert summary(tracked([chat, topic, tsla])) == summary([inc])


def test_a_ticker_named_by_a_broad_key_never_ties_two_tickers_together() -> None:
    # two tickers surging at once, and a chat alert whose messages name both: the chat alert joins one of them,
    # the tickers stay two incidents
    tsla, aapl = about(TSLA, {"m1": ["TSLA", "AAPL"]}), about(AAPL, {"n1": ["AAPL", "TSLA"]})
    chat = about(alert("c-chat", "source", "chat", ("c1", "c2")), {"c1": ["TSLA"], "c2": ["AAPL"]})
    incidents = group_alerts([tsla, aapl, chat], GAP, SECTORS)
    assert sorted(r["headline"] for r in incidents) == ["AAPL", "TSLA"]
    assert sorted(len(r["children"]) for r in incidents) == [1, 2]
