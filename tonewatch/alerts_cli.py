"""Reading alerts for people and scripts: ``tonewatch alerts tail``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from streams.control.rejects import preview
from streams.windows.alerts import SEVERITY_RANK
from tonewatch.core.kafka_io import iter_topic
from tonewatch.core.settings import Settings


def matches(alert: dict[str, Any], ticker: str | None, topic: str | None, min_severity: str | None) -> bool:
    if ticker and not (alert.get("dimension") == "ticker" and alert.get("key", "").upper() == ticker.upper()):
        return False
    if topic and not (alert.get("dimension") == "topic" and alert.get("key") == topic):
        return False
    if min_severity:
        return SEVERITY_RANK.get(alert.get("severity", ""), -1) >= SEVERITY_RANK[min_severity]
    return True


def tail(
    settings: Settings,
    *,
    follow: bool,
    ticker: str | None = None,
    topic: str | None = None,
    min_severity: str | None = None,
) -> Iterator[dict[str, Any]]:
    for record in iter_topic(settings.kafka, settings.kafka.topic("alerts"), follow=follow):
        try:
            alert = json.loads(record.value)
        except (TypeError, json.JSONDecodeError):
            continue  # the worker is the only producer; a foreign record is not an alert
        if matches(alert, ticker, topic, min_severity):
            yield alert


def format_alert(a: dict[str, Any]) -> str:
    """One readable line: what, where, how far above normal, and the worst message."""
    head = f"{a['at']} {a['status'].upper():8} {a['severity']:8} {a['dimension']}={a['key']}"
    body = (
        f"negative {a['negative_share']:.0%} vs baseline {a['baseline']:.0%} "
        f"(n={a['volume']}, z={a['score']:.1f}) id={a['id']}"
    )
    top = a.get("top_messages") or []
    # a message's text is anyone's: escape sequences and bidi controls must not reach the terminal
    worst = f'\n    e.g. "{preview(top[0]["text"], 100)}"' if top and a["status"] == "firing" else ""
    return f"{head}  {body}{worst}"


def dumps(a: dict[str, Any]) -> str:
    return json.dumps(a, ensure_ascii=False)
