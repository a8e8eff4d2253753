"""What the notifier knows, folded from topics: subscriptions, acks, the ledger, published incidents.

Every field is rebuilt at start by reading the topics from the beginning, so a restarted notifier
knows what it already delivered (and never sends it again) and which alerts still escalate. So a record that
cannot be folded is skipped and logged, never raised: it would stop every start of the notifier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.control.rejects import InvalidRecord, load_json, preview, validation_reason
from tonewatch.notify.subscriptions import Subscription, apply_record

log = logging.getLogger("tonewatch.notifier")
# what a delivery said while its incident (or, in older ledgers, its alert) was still open: escalation counts from it
NOTIFYING = ("opened", "updated", "firing")


class _Delivery(BaseModel):
    """What a ledger value must hold to be folded (``delivery_entry`` writes it; strict: nothing is coerced)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    key: str
    subscription: str
    alert_id: str
    status: str
    kind: str = Field(pattern=r"^(initial|escalation-[0-9]{1,9})$")
    delivered_at: float = Field(allow_inf_nan=False)


class _AlertRef(BaseModel):
    """What escalation reads of a stored alert: its id (a key and a dead letter's key) and status."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: str
    status: str


class AlertRef(BaseModel):
    """What the notifier reads of an alert to filter, key and group it (``alert_payload`` writes more).
    Strict: a number where a string belongs would break a filter or a key later, after the commit."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: str
    status: str
    dimension: str
    key: str
    severity: str = ""


class _ChildRef(AlertRef):
    """What restoring an incident reads of each child (incidents.child_from_record)."""

    volume: int = 0
    score: float = Field(0.0, allow_inf_nan=False)
    window: dict[str, str] = Field(default_factory=dict)
    message_ids: list[str] = Field(default_factory=list)
    tickers: list[str] = Field(default_factory=list)


class _IncidentRef(BaseModel):
    """What a record of the incidents topic must hold to be restored (incidents.incident_record writes it)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: str
    version: int = Field(ge=1)
    status: str
    headline: str
    children: list[_ChildRef] = Field(min_length=1)
    top_messages: list[dict[str, Any]] = Field(default_factory=list)
    former_headlines: list[str] = Field(default_factory=list)


def _check(shape: type[BaseModel], doc: Any, what: str) -> None:
    try:
        shape.model_validate(doc)
    except ValidationError as exc:
        raise InvalidRecord(f"bad {what}: {validation_reason(exc)}") from exc


@dataclass
class Notified:
    """One subscription's view of one incident: when its first open version reached it, escalations sent."""

    at: float
    sent: int = 0


@dataclass
class State:
    subs: dict[str, Subscription] = field(default_factory=dict)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger: set[str] = field(default_factory=set)
    # alert id -> (partition, offset, payload): the latest record of each alert (folded when given; the notifier
    # reads incidents instead)
    alerts: dict[str, tuple[int, int, dict[str, Any]]] = field(default_factory=dict)
    notified: dict[tuple[str, str], Notified] = field(default_factory=dict)
    # incident id -> its latest record on the incidents topic: the tracker starts from these
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)

    def note_alert(self, partition: int, offset: int, alert: dict[str, Any]) -> None:
        """Keep the newest record per alert id (alerts are keyed by id, so one partition orders them)."""
        aid = str(alert.get("id"))
        current = self.alerts.get(aid)
        if current is None or (partition, offset) >= current[:2]:
            self.alerts[aid] = (partition, offset, alert)

    def note_delivery(self, entry: dict[str, Any]) -> None:
        """Fold one ledger value (what ``delivery_entry`` writes; ``apply`` checked its shape)."""
        self.ledger.add(entry["key"])
        if entry["status"] not in NOTIFYING:
            return
        pair = (entry["subscription"], entry["alert_id"])
        kind = str(entry["kind"])
        if kind == "initial":
            self.notified.setdefault(pair, Notified(float(entry["delivered_at"])))
        elif kind.startswith("escalation-") and pair in self.notified:
            n = self.notified[pair]
            n.sent = max(n.sent, int(kind.split("-", 1)[1]))

    def apply(self, kind: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> str | None:
        """Fold a record of the subscriptions, acks, deliveries, alerts or incidents topic. Returns why it was skipped
        (logged here; the state is as if it were absent), None once folded. Never raises."""
        try:
            self._fold(kind, partition, offset, key, value)
        except InvalidRecord as exc:
            log.warning("skipped %s record %s@%s: %s [%s]", kind, partition, offset, exc.reason, preview(value))
            return exc.reason
        return None

    def _fold(self, kind: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """Every check comes before any change: a bad record changes nothing (but see subscriptions)."""
        if key is None:
            raise InvalidRecord("record without a key")
        try:
            name = key.decode()
        except UnicodeDecodeError as exc:
            raise InvalidRecord("key is not UTF-8") from exc
        if kind == "subscriptions":
            self._fold_subscription(key, value)
        elif kind == "acks":
            if value is None:
                self.acks.pop(name, None)
            else:
                self.acks[name] = load_json(value)
        elif kind == "deliveries" and value is not None:  # a tombstone: nothing to fold
            doc = load_json(value)
            _check(_Delivery, doc, "ledger entry")
            self.note_delivery(doc)
        elif kind == "alerts":
            doc = load_json(value)
            _check(_AlertRef, doc, "alert")
            self.note_alert(partition, offset, doc)
        elif kind == "incidents" and value is not None:
            doc = load_json(value)
            _check(_IncidentRef, doc, "incident")
            current = self.incidents.get(doc["id"])
            if current is None or doc["version"] >= current["version"]:
                self.incidents[doc["id"]] = doc

    def _fold_subscription(self, key: bytes, value: bytes | None) -> None:
        """Checked here, as ``apply_record`` reads it: a value no version of this code wrote removes the
        subscription rather than guess, and is reported. (``apply_record`` alone lets invalid UTF-8 or deep
        nesting raise from ``json``.)"""
        reason = None
        if value is not None:
            try:
                Subscription.model_validate(load_json(value))
            except InvalidRecord as exc:
                reason = exc.reason
            except ValidationError as exc:
                reason = f"bad subscription: {validation_reason(exc)}"
        apply_record(self.subs, key, None if reason else value)
        if reason:
            raise InvalidRecord(reason)


def delivery_entry(
    key: str, sub_id: str, destination: str, item: dict[str, Any], kind: str, at: float, attempts: int
) -> dict[str, Any]:
    """The ledger value written once a delivery succeeded; ``alert_id`` is the id of what was delivered (an
    incident's, since incidents; the name stays so older ledgers fold alike)."""
    entry = {"key": key, "subscription": sub_id, "alert_id": item["id"], "status": item["status"],
             "kind": kind, "delivered_at": at, "attempts": attempts, "destination": destination}
    if "version" in item:
        entry["version"] = item["version"]
    return entry
