"""What the notifier knows, folded from topics: subscriptions, acks, the ledger, alert statuses.

Every field is rebuilt at start by reading the topics from the beginning, so a restarted notifier
knows what it already delivered (and never sends it again) and which alerts still escalate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tonewatch.notify.subscriptions import Subscription, apply_record


@dataclass
class Notified:
    """One subscription's view of one alert: when the initial firing reached it, escalations sent."""

    at: float
    sent: int = 0


@dataclass
class State:
    subs: dict[str, Subscription] = field(default_factory=dict)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger: set[str] = field(default_factory=set)
    # alert id -> (partition, offset, payload): the latest record of each alert
    alerts: dict[str, tuple[int, int, dict[str, Any]]] = field(default_factory=dict)
    notified: dict[tuple[str, str], Notified] = field(default_factory=dict)

    def note_alert(self, partition: int, offset: int, alert: dict[str, Any]) -> None:
        """Keep the newest record per alert id (alerts are keyed by id, so one partition orders them)."""
        aid = str(alert.get("id"))
        current = self.alerts.get(aid)
        if current is None or (partition, offset) >= current[:2]:
            self.alerts[aid] = (partition, offset, alert)

    def note_delivery(self, entry: dict[str, Any]) -> None:
        """Fold one ledger value (what ``delivery_entry`` writes)."""
        self.ledger.add(entry["key"])
        if entry["status"] != "firing":
            return
        pair = (entry["subscription"], entry["alert_id"])
        kind = str(entry["kind"])
        if kind == "initial":
            self.notified.setdefault(pair, Notified(float(entry["delivered_at"])))
        elif kind.startswith("escalation-") and pair in self.notified:
            n = self.notified[pair]
            n.sent = max(n.sent, int(kind.split("-", 1)[1]))

    def apply(self, kind: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """Fold a record of the subscriptions, acks, deliveries or alerts topic."""
        if kind == "subscriptions":
            apply_record(self.subs, key, value)
            return
        if key is None:
            return
        try:
            doc = json.loads(value) if value is not None else None
        except json.JSONDecodeError:
            return  # foreign record on an internal topic: nothing to fold
        if kind == "acks":
            if doc is None:
                self.acks.pop(key.decode(), None)
            else:
                self.acks[key.decode()] = doc
        elif kind == "deliveries" and isinstance(doc, dict):
            self.note_delivery(doc)
        elif kind == "alerts" and isinstance(doc, dict) and "id" in doc:
            self.note_alert(partition, offset, doc)


def delivery_entry(
    key: str, sub_id: str, destination: str, alert: dict[str, Any], kind: str, at: float, attempts: int
) -> dict[str, Any]:
    """The ledger value written once a delivery succeeded."""
    return {"key": key, "subscription": sub_id, "alert_id": alert["id"], "status": alert["status"],
            "kind": kind, "delivered_at": at, "attempts": attempts, "destination": destination}
