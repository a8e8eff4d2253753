"""Reading incidents and alerts for people and scripts: ``tonewatch alerts tail`` and ``alerts list``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from streams.control.rejects import InvalidRecord, load_json, preview
from streams.windows.alerts import SEVERITY_RANK
from tonewatch.core.kafka_io import iter_topic
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INCIDENTS


def matches(alert: dict[str, Any], ticker: str | None, topic: str | None, min_severity: str | None) -> bool:
    if ticker and not (alert.get("dimension") == "ticker" and alert.get("key", "").upper() == ticker.upper()):
        return False
    if topic and not (alert.get("dimension") == "topic" and alert.get("key") == topic):
        return False
    if min_severity:
        return SEVERITY_RANK.get(alert.get("severity", ""), -1) >= SEVERITY_RANK[min_severity]
    return True


def incident_matches(
    incident: dict[str, Any], ticker: str | None, topic: str | None, min_severity: str | None,
    dimension: str | None = None,
) -> bool:
    """An incident passes a filter when one of its alerts is that ticker (topic, dimension) and the incident
    is severe enough. Children only join and severity only rises, so once it passes it keeps passing."""
    children = [c for c in incident.get("children") or [] if isinstance(c, dict)]
    if dimension and not any(c.get("dimension") == dimension for c in children):
        return False
    if ticker and not any(matches(c, ticker, None, None) for c in children):
        return False
    if topic and not any(matches(c, None, topic, None) for c in children):
        return False
    return not min_severity or SEVERITY_RANK.get(incident.get("severity", ""), -1) >= SEVERITY_RANK[min_severity]


def _docs(settings: Settings, topic: str, follow: bool) -> Iterator[dict[str, Any]]:
    for record in iter_topic(settings.kafka, settings.kafka.topic(topic), follow=follow):
        try:
            doc = load_json(record.value)
        except InvalidRecord:
            continue  # a tombstone, or a record no version of Tonewatch wrote
        if isinstance(doc, dict):
            yield doc


def tail(
    settings: Settings,
    *,
    follow: bool,
    ticker: str | None = None,
    topic: str | None = None,
    min_severity: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Per-key alerts, as the worker wrote them."""
    for alert in _docs(settings, "alerts", follow):
        if matches(alert, ticker, topic, min_severity):
            yield alert


def tail_incidents(
    settings: Settings, *, follow: bool, ticker: str | None = None, topic: str | None = None,
    min_severity: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every incident version the notifier published (compaction may have left only the latest of old ones)."""
    for incident in _docs(settings, INCIDENTS, follow):
        if "children" in incident and incident_matches(incident, ticker, topic, min_severity):
            yield incident


def open_incidents(settings: Settings) -> list[dict[str, Any]]:
    """The latest version of every incident not resolved, oldest first."""
    latest: dict[str, dict[str, Any]] = {}
    for incident in tail_incidents(settings, follow=False):
        current = latest.get(str(incident.get("id")))
        if current is None or incident.get("version", 0) >= current.get("version", 0):
            latest[str(incident.get("id"))] = incident
    still = [i for i in latest.values() if i.get("status") != "resolved"]
    return sorted(still, key=lambda i: (str(i.get("window", {}).get("start")), str(i.get("id"))))


def format_alert(a: dict[str, Any]) -> str:
    """One readable line: what, where, how far above normal, and the worst message."""
    head = f"{a['at']} {a['status'].upper():8} {a['severity']:8} {a['dimension']}={preview(a['key'], 80)}"
    body = (
        f"negative {a['negative_share']:.0%} vs baseline {a['baseline']:.0%} "
        f"(n={a['volume']}, z={a['score']:.1f}) id={a['id']}"
    )
    top = a.get("top_messages") or []
    # a message's text is anyone's: escape sequences and bidi controls must not reach the terminal
    worst = f'\n    e.g. "{preview(top[0]["text"], 100)}"' if top and a["status"] == "firing" else ""
    return f"{head}  {body}{worst}"


def format_incident(i: dict[str, Any]) -> str:
    """A line for the incident, one indented line per child alert, and its worst message."""
    children = i.get("children") or []
    dims = sorted({str(c.get("dimension")) for c in children})
    head = (f"{i.get('at', '')} {str(i.get('status', '')).upper():8} {i.get('severity', ''):8} "
            f"{preview(str(i.get('headline', '')), 80)} ({len(children)} alerts: {', '.join(dims)}) "
            f"id={i.get('id')} v{i.get('version')}")
    lines = [head]
    for c in children:
        lines.append(f"    {str(c.get('status', '')).upper():8} {c.get('severity', ''):8} "
                     f"{c.get('dimension')}={preview(str(c.get('key', '')), 80)} (n={c.get('volume')}, "
                     f"z={float(c.get('score') or 0):.1f}) id={c.get('id')}")
    top = i.get("top_messages") or []
    if top and i.get("status") != "resolved":  # anyone's text: only printable characters reach the terminal
        lines.append(f'    e.g. "{preview(str(top[0].get("text", "")), 100)}"')
    return "\n".join(lines)


def dumps(a: dict[str, Any]) -> str:
    return json.dumps(a, ensure_ascii=False)
