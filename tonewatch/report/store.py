"""The report's input from the history store instead of the topics: ``tonewatch report`` when a store is set.

Trends and alerts come back as the records the topics held (the store keeps each whole); scored messages as the
fields the report plots. Dead letters are not stored: they stay on their topic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tonewatch.report.data import RunInput


def read_store(conn: Any, since: datetime) -> RunInput:
    """Everything with an event time from ``since`` on (a window by its start)."""
    trends = conn.execute("SELECT record FROM trends WHERE window_start >= %s ORDER BY window_start, dimension, key",
                          (since,)).fetchall()
    alerts = conn.execute("SELECT payload FROM alerts WHERE window_start >= %s ORDER BY window_start, alert_id, "
                          "status DESC", (since,)).fetchall()
    scored = conn.execute("SELECT ts, source, model_versions FROM messages WHERE ts >= %s ORDER BY ts, id",
                          (since,)).fetchall()
    return RunInput(
        scored=[{"ts": _iso(ts), "source": source, "model_versions": versions} for ts, source, versions in scored],
        trends=[record for (record,) in trends],
        alerts=[payload for (payload,) in alerts],
        dead=[],
    )


def _iso(ts: datetime) -> str:
    """UTC with a Z, as the scored topic writes it, whatever the session's time zone."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
