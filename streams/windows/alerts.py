"""Alert payloads: one JSON document per state change, keyed for idempotent delivery."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from streams.windows.detector import Transition

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def alert_payload(
    t: Transition, dimension: str, key: str, window_s: int, lateness_s: int, dashboard_url: str | None = None
) -> dict[str, Any]:
    """Everything a subscriber needs to judge the alert without opening a dashboard; ``at`` is the event time
    its window was decided (its end plus the allowed lateness)."""
    start, end = t.window.start, t.window.start + window_s
    payload: dict[str, Any] = {
        "id": t.alert_id,
        "status": t.status,
        "dimension": dimension,
        "key": key,
        "severity": t.severity,
        "reason": t.reason,
        "window": {"start": _iso(start), "end": _iso(end), "seconds": window_s},
        "volume": t.window.count,
        "negative": t.window.negative,
        "negative_share": round(t.window.share, 4),
        "baseline": round(t.baseline, 4),
        "corrected_share": round(t.window.corrected_share, 4),  # the true share, estimated (prevalence.py)
        "corrected_baseline": round(t.baseline if t.corrected is None else t.corrected, 4),
        "score": round(t.score, 3),
        "top_messages": [asdict(d) for d in t.window.drivers],
        "model_versions": dict(t.window.model_versions),
        "at": _iso(end + lateness_s),
    }
    if dashboard_url:
        frm, to = int((start - 30 * window_s) * 1000), int((end + 10 * window_s) * 1000)
        payload["dashboard_url"] = f"{dashboard_url}?from={frm}&to={to}&var-key={key}"
    return payload
