"""Incidents kept up to date as alerts arrive: the notifier's state of incidents.py's grouping.

An incident's changes wait ``settle_s`` (wall clock) before they are published as one new version: the alerts
of one surge come from several partitions within moments of each other, so subscribers get one "opened" with
all of them instead of one notification per alert, and the grouping (and the id, named after the canonical
seed) is the one ``incidents.group`` gives for the set. A published incident keeps its id; an alert that
arrives later joins it (a more specific one becomes its headline) or starts a new one. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tonewatch.notify.incidents import (
    Child,
    affinity,
    child_from_record,
    child_of,
    group,
    incident_id,
    incident_record,
    messages_of,
    root,
    severity,
    top_messages,
)

# a resolved incident is forgotten this long (event time) after its latest child fired: an alert read later
# than that starts a new incident. Incidents are rare, so a day costs little memory.
KEEP_S = 86_400.0
Published = tuple[dict[str, Any], list[str]]  # a record to publish, and the alert ids whose records it answers


@dataclass
class Tracked:
    id: str
    children: dict[str, Child]
    top: list[dict[str, Any]]
    version: int = 0
    record: dict[str, Any] | None = None  # the latest published version
    former: list[str] = field(default_factory=list)  # headlines it had before a more specific child joined
    former_severities: list[str] = field(default_factory=list)  # severities it had before it rose
    changes: list[dict[str, str]] = field(default_factory=list)  # since the latest published version
    dirty_since: float | None = None  # when the first unpublished change arrived (wall clock)
    answers: list[str] = field(default_factory=list)  # alert ids waiting for the next version
    # a change to an alert whose joining is not published yet: it goes out one version later, so every
    # destination sees the alert fire before it resolves
    deferred: dict[str, Child] = field(default_factory=dict)


@dataclass
class Loose:
    """An alert in no incident yet: its first record (the cause), its latest, when it was read."""

    first: Child
    latest: Child
    seen: float
    messages: list[dict[str, Any]]


def _change(event: str, c: Child) -> dict[str, str]:
    return {"event": event, "alert_id": c.id, "dimension": c.dimension, "key": c.key}


class Tracker:
    def __init__(self, gap_s: float, settle_s: float, sectors: Mapping[str, str], top: int) -> None:
        self.gap_s, self.settle_s, self.sectors, self.top = gap_s, settle_s, sectors, top
        self.incidents: dict[str, Tracked] = {}
        self.owner: dict[str, str] = {}  # alert id -> incident id
        self.loose: dict[str, Loose] = {}
        self.high_water = 0.0  # the latest firing window start seen (event time)

    # --- state from the incidents topic ------------------------------------------------------------
    def restore(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Published incidents, the latest version of each (read at start): they keep their ids and versions."""
        for r in records:
            children = {str(d["id"]): child_from_record(d) for d in r.get("children") or []}
            if not children:
                continue
            head_of, url = r.get("root"), r.get("dashboard_url")
            head = head_of.get("alert_id") if isinstance(head_of, dict) else None
            if head in children and isinstance(url, str):  # the link is the root alert's; keep it
                children[head] = replace(children[head], dashboard_url=url)
            inc = Tracked(str(r["id"]), children, list(r.get("top_messages") or []), int(r["version"]),
                          dict(r), list(r.get("former_headlines") or []), list(r.get("former_severities") or []))
            self.incidents[inc.id] = inc
            self.owner.update(dict.fromkeys(children, inc.id))
            self.high_water = max(self.high_water, *(c.start for c in children.values()))
        self._prune()

    # --- alerts in ----------------------------------------------------------------------------------
    def add(self, alert: Mapping[str, Any], now: float) -> dict[str, Any] | None:
        """Take one alert record. Returns the incident's published record when the alert changes nothing
        (a copy read again: its deliveries are deduplicated by the ledger); None when the change waits for
        ``due``."""
        aid = str(alert["id"])
        if aid in self.owner:
            inc = self.incidents[self.owner[aid]]
            old = inc.deferred.get(aid, inc.children[aid])
            new = child_of(alert, old)
            if new == old and inc.dirty_since is None:
                return inc.record
            if new != old and any(x["event"] == "joined" and x["alert_id"] == aid for x in inc.changes):
                inc.deferred[aid] = new
            elif new != old:
                inc.children[aid] = new
                inc.changes.append(_change(new.status if new.status == "resolved" else "fired", new))
            self._dirty(inc, aid, now)
            return None
        if aid in self.loose:
            entry = self.loose[aid]
            entry.latest = child_of(alert, entry.latest)
            return None
        c, messages = child_of(alert), messages_of(alert)
        self.high_water = max(self.high_water, c.start)
        target = self._best([c])
        if target is None:
            self.loose[aid] = Loose(c, c, now, messages)
        else:
            self._join(target, c, messages, now, aid)
        return None

    def _best(self, children: list[Child]) -> Tracked | None:
        """The published incident these children are most related to (the first by id among equals)."""
        best, score = None, 0
        for inc in sorted(self.incidents.values(), key=lambda i: i.id):
            s = sum(affinity(inc.children.values(), c, self.gap_s, self.sectors) for c in children)
            if s > score:
                best, score = inc, s
        return best

    def _join(self, inc: Tracked, c: Child, messages: list[dict[str, Any]], now: float, aid: str) -> None:
        inc.children[c.id] = c
        self.owner[c.id] = inc.id
        inc.top = top_messages([*inc.top, *messages], self.top)
        inc.changes.append(_change("joined", c))
        self._dirty(inc, aid, now)

    def _dirty(self, inc: Tracked, aid: str, now: float) -> None:
        inc.dirty_since = now if inc.dirty_since is None else inc.dirty_since
        inc.answers.append(aid)

    # --- versions out -------------------------------------------------------------------------------
    def due(self, now: float) -> list[Published]:
        """The versions to publish now: changes that have settled, oldest incident first."""
        out = self._settle_loose(now)
        for inc in sorted(self.incidents.values(), key=lambda i: (i.dirty_since or 0.0, i.id)):
            if inc.dirty_since is not None and inc.dirty_since + self.settle_s <= now:
                out += self._flush(inc)
        if out:
            self._prune()
        return out

    def _settle_loose(self, now: float) -> list[Published]:
        if not any(e.seen + self.settle_s <= now for e in self.loose.values()):
            return []
        out: list[Published] = []
        for g in group([e.first for e in self.loose.values()], self.gap_s, self.sectors):
            entries = [self.loose[c.id] for c in g]
            if min(e.seen for e in entries) + self.settle_s > now:
                continue
            for c in g:
                del self.loose[c.id]
            target = self._best(g)  # an incident published since these arrived may be their cause
            if target is None:
                target = Tracked(incident_id(g), {}, [])
                self.incidents[target.id] = target
            for e in entries:
                self._join(target, e.first, e.messages, now, e.first.id)
                if e.latest != e.first:  # it fired and resolved while it settled: first it opens, firing
                    target.deferred[e.first.id] = e.latest
            out += self._flush(target)
        return out

    def _flush(self, inc: Tracked) -> list[Published]:
        """The incident's next version, and one more for deferred changes; the last answers the alerts."""
        record, answers = self._publish(inc)
        if not inc.deferred:
            return [(record, answers)]
        for c in inc.deferred.values():
            inc.children[c.id] = c
            inc.changes.append(_change("resolved" if c.status == "resolved" else "fired", c))
        inc.deferred = {}
        return [(record, []), (self._publish(inc)[0], answers)]

    def _publish(self, inc: Tracked) -> Published:
        inc.version += 1
        kids = list(inc.children.values())
        # a destination that keys on the headline or severity (Alertmanager labels) ends what it had before
        for now, before, former in ((root(kids).key, "headline", inc.former),
                                    (severity(kids), "severity", inc.former_severities)):
            was = inc.record.get(before, now) if inc.record is not None else now
            if was != now and was not in former:
                former.append(was)
        inc.record = incident_record(inc.id, inc.version, kids, inc.top, changes=inc.changes,
                                     former_headlines=inc.former, former_severities=inc.former_severities)
        answers, inc.answers, inc.changes, inc.dirty_since = inc.answers, [], [], None
        return inc.record, answers

    def _prune(self) -> None:
        for inc in list(self.incidents.values()):
            done = inc.dirty_since is None and all(c.status == "resolved" for c in inc.children.values())
            if done and max(c.start for c in inc.children.values()) < self.high_water - KEEP_S:
                del self.incidents[inc.id]
                for aid in inc.children:
                    self.owner.pop(aid, None)

    # --- reading ------------------------------------------------------------------------------------
    def record(self, iid: str) -> dict[str, Any] | None:
        inc = self.incidents.get(iid)
        return inc.record if inc is not None else None

    def waiting(self) -> int:
        """Alerts whose change is not published yet."""
        return len(self.loose) + sum(len(i.answers) for i in self.incidents.values())
