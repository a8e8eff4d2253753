"""Which per-key alerts share a cause: pure functions, no broker (docs/decisions/2026-12-07-incidents.md).

A surge on a ticker fires the ticker, its sector, its topic and its source, each on its own partition of the
alerts topic. Two alerts are related when their firing windows start within ``gap_s`` of each other (event
time) and they share a driving message, or one is a ticker and the other its sector or a key whose driving
messages are about that ticker (a broad key often reaches its bar a window or two later, on other
messages). ``group`` assigns every alert of a set to one incident in a canonical order, so the result does
not depend on the order the alerts arrived in; the notifier's tracker (tracker.py) applies the same rules incrementally.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from streams.windows.alerts import SEVERITY_RANK

# most specific first: a ticker is the headline over its sector, a sector over a topic, a topic over a source
RANK = {"ticker": 0, "sector": 1, "topic": 2, "source": 3}
# an incident this wide is critical whatever its children say: the surge reached that many views of the market
CRITICAL_BREADTH = 3


def epoch(iso: object) -> float | None:
    """Seconds of an ISO-8601 time as the worker writes it (``...Z``); None when it is not one."""
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Child:
    """One per-key alert as an incident sees it: its firing window and driving messages, and its status."""

    id: str
    dimension: str
    key: str
    status: str
    severity: str
    start: float
    end: float
    volume: int = 0
    score: float = 0.0
    message_ids: frozenset[str] = frozenset()
    at: str = ""
    dashboard_url: str | None = None
    tickers: frozenset[str] = frozenset()  # what its driving messages are about

    @property
    def order(self) -> tuple[int, float, int, str, str]:
        """The canonical order: most specific, earliest, largest, then by name (the first seeds an incident)."""
        return (RANK.get(self.dimension, len(RANK)), self.start, -self.volume, self.key, self.id)

    @property
    def prominence(self) -> tuple[int, int, str, str]:
        """The headline order: most specific, largest, then by name."""
        return (RANK.get(self.dimension, len(RANK)), -self.volume, self.key, self.id)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def messages_of(alert: Mapping[str, Any]) -> list[dict[str, Any]]:
    top = alert.get("top_messages")
    return [m for m in top if isinstance(m, dict)] if isinstance(top, list) else []


def child_of(alert: Mapping[str, Any], known: Child | None = None) -> Child:
    """The child an alert record describes. A resolved record's window is the calm one that ended the alert,
    so a child already known keeps its firing window and messages and takes only the new status."""
    if known is not None:
        # an alert id names one firing episode: once resolved it stays so, whatever copy is read again
        if known.status == "resolved" or alert["status"] == known.status:
            return known
        return replace(known, status=str(alert["status"]), at=str(alert.get("at") or known.at))
    window = _dict(alert.get("window"))
    at = epoch(alert.get("at"))
    start = epoch(window.get("start")) or at or 0.0
    end = epoch(window.get("end")) or start
    ids = frozenset(str(m["message_id"]) for m in messages_of(alert) if m.get("message_id") is not None)
    volume, score = alert.get("volume"), alert.get("score")
    url = alert.get("dashboard_url")
    return Child(str(alert["id"]), str(alert["dimension"]), str(alert["key"]), str(alert["status"]),
                 str(alert.get("severity") or ""), start, end,
                 volume if isinstance(volume, int) and not isinstance(volume, bool) else 0,
                 float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 0.0,
                 ids, str(alert.get("at") or ""), url if isinstance(url, str) else None,
                 _tickers(m.get("tickers") for m in messages_of(alert)))


def _tickers(lists: Iterable[object]) -> frozenset[str]:
    """The tickers named in lists of them; anything else (records from before drivers carried them) is none."""
    return frozenset(t.upper() for xs in lists if isinstance(xs, list) for t in xs if isinstance(t, str))


def related(a: Child, b: Child, gap_s: float, sectors: Mapping[str, str]) -> int:
    """How strongly two alerts share a cause: 0 when they do not; else the driving messages they share, plus
    one when one is a ticker and the other its sector. Two tickers relate only through shared messages."""
    if abs(a.start - b.start) > gap_s:
        return 0
    strength = len(a.message_ids & b.message_ids)
    if (a.dimension == "ticker") != (b.dimension == "ticker"):  # never between two tickers: two surges stay two
        ticker, other = (a, b) if a.dimension == "ticker" else (b, a)
        if other.dimension == "sector":
            strength += sectors.get(ticker.key.upper()) == other.key
        strength += ticker.key.upper() in other.tickers
    return strength


def affinity(children: Iterable[Child], c: Child, gap_s: float, sectors: Mapping[str, str]) -> int:
    return sum(related(other, c, gap_s, sectors) for other in children)


def group(children: Iterable[Child], gap_s: float, sectors: Mapping[str, str]) -> list[list[Child]]:
    """Children in incidents. In the canonical order each joins the incident it is most related to (the
    earliest-seeded among equals) or seeds a new one: a function of the set, not of the arrival order."""
    groups: list[list[Child]] = []
    for c in sorted(children, key=lambda x: x.order):
        scores = [affinity(g, c, gap_s, sectors) for g in groups]
        best = max(scores, default=0)
        if best > 0:
            groups[scores.index(best)].append(c)
        else:
            groups.append([c])
    return groups


def incident_id(children: Iterable[Child]) -> str:
    """Named after its seed, the first child in the canonical order: the same in every replay."""
    seed = min(children, key=lambda c: c.order)
    return "inc-" + hashlib.sha1(f"incident|{seed.id}".encode()).hexdigest()[:16]


def root(children: Iterable[Child]) -> Child:
    return min(children, key=lambda c: c.prominence)


def severity(children: Sequence[Child]) -> str:
    """The worst child's severity, raised to critical once the surge spans CRITICAL_BREADTH dimensions."""
    worst = max(children, key=lambda c: SEVERITY_RANK.get(c.severity, -1)).severity or "warning"
    return "critical" if len({c.dimension for c in children}) >= CRITICAL_BREADTH else worst


def top_messages(messages: Iterable[Mapping[str, Any]], most: int) -> list[dict[str, Any]]:
    """The ``most`` most negative messages, each once (by message id), then by id: order independent."""
    by_id: dict[str, dict[str, Any]] = {}
    for m in messages:
        mid = m.get("message_id")
        if mid is not None and str(mid) not in by_id:
            by_id[str(mid)] = dict(m)

    def p(m: Mapping[str, Any]) -> float:
        value = m.get("p_negative")
        return float(value) if isinstance(value, int | float) else 0.0

    return sorted(by_id.values(), key=lambda m: (-p(m), str(m["message_id"])))[:max(most, 0)]


def child_record(c: Child) -> dict[str, Any]:
    return {"id": c.id, "dimension": c.dimension, "key": c.key, "status": c.status, "severity": c.severity,
            "volume": c.volume, "score": round(c.score, 3), "window": {"start": iso(c.start), "end": iso(c.end)},
            "message_ids": sorted(c.message_ids), "tickers": sorted(c.tickers), "at": c.at}


def child_from_record(d: Mapping[str, Any]) -> Child:
    """A child read back from an incident record (the incidents topic): what relating a new alert needs."""
    window = _dict(d.get("window"))
    start = epoch(window.get("start")) or 0.0
    ids = d.get("message_ids")
    ids = ids if isinstance(ids, list) else []
    return Child(str(d["id"]), str(d["dimension"]), str(d["key"]), str(d["status"]), str(d.get("severity") or ""),
                 start, epoch(window.get("end")) or start, int(d.get("volume") or 0), float(d.get("score") or 0.0),
                 frozenset(map(str, ids)), str(d.get("at") or ""), tickers=_tickers([d.get("tickers")]))


def status_of(children: Iterable[Child], version: int) -> str:
    if all(c.status == "resolved" for c in children):
        return "resolved"
    return "opened" if version == 1 else "updated"


def incident_record(
    iid: str, version: int, children: Sequence[Child], top: list[dict[str, Any]], *,
    changes: Sequence[Mapping[str, str]] = (), former_headlines: Sequence[str] = (),
    former_severities: Sequence[str] = (),
) -> dict[str, Any]:
    """One version of an incident, as the incidents topic, webhooks and the CLI get it (docs/delivery.md)."""
    kids = sorted(children, key=lambda c: c.order)
    head = root(kids)
    record: dict[str, Any] = {
        "id": iid, "version": version, "status": status_of(kids, version), "headline": head.key,
        "root": {"dimension": head.dimension, "key": head.key, "alert_id": head.id},
        "severity": severity(kids), "breadth": len({c.dimension for c in kids}),
        "window": {"start": iso(min(c.start for c in kids)), "end": iso(max(c.end for c in kids))},
        "children": [child_record(c) for c in kids], "changes": [dict(x) for x in changes],
        "top_messages": top, "former_headlines": list(former_headlines),
        "former_severities": list(former_severities),
        "at": max((c.at for c in kids), default=""),
    }
    url = head.dashboard_url or next((c.dashboard_url for c in kids if c.dashboard_url), None)
    if url:
        record["dashboard_url"] = url
    return record


def group_alerts(
    alerts: Iterable[Mapping[str, Any]], gap_s: float, sectors: Mapping[str, str], most: int = 5
) -> list[dict[str, Any]]:
    """Every alert record of a set (firing and resolved records, any order) in incidents, as records of
    version 1: the reference the incremental tracker is tested against."""
    children: dict[str, Child] = {}
    messages: dict[str, list[dict[str, Any]]] = {}
    # a firing record before its resolved one, whatever order they came in: the firing one holds the cause
    for a in sorted(alerts, key=lambda a: a["status"] != "firing"):
        children[str(a["id"])] = child_of(a, children.get(str(a["id"])))
        messages.setdefault(str(a["id"]), messages_of(a))
    out = []
    for g in group(children.values(), gap_s, sectors):
        top = top_messages((m for c in g for m in messages[c.id]), most)
        out.append(incident_record(incident_id(g), 1, g, top))
    return sorted(out, key=lambda r: r["id"])
