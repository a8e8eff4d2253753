"""What the report shows, computed from topic records as plain data (no plotting, no broker).

Inputs are the JSON dicts exactly as they sit on the scored, trends, alerts and dead-letter
topics, so the same functions serve the CLI, the demo and tests with hand-made records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_WINDOW_S = 60


@dataclass(frozen=True)
class RunInput:
    """The four topics of one run (one topic prefix)."""

    scored: list[dict[str, Any]] = field(default_factory=list)
    trends: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    """The header figures: how much went through, what was refused, what fired."""

    scored_by_source: dict[str, int]
    dead_by_stage: dict[str, int]
    top_dead_reasons: list[tuple[str, int]]
    fired: int
    resolved: int
    model_versions: dict[str, int]  # "sentiment v1 · topic v1" -> messages scored
    first_ts: datetime | None
    last_ts: datetime | None


@dataclass(frozen=True)
class KeySeries:
    """One key's closed windows, in time order, and its alert transitions."""

    dimension: str
    key: str
    starts: list[datetime]
    shares: list[float]
    baselines: list[float | None]  # the baseline each window was judged against (None: the first window)
    counts: list[int]
    alerting: list[bool]
    firing: list[datetime]
    resolved: list[datetime]


def utc(value: str | float) -> datetime:
    """An ISO-8601 string or epoch seconds as an aware UTC datetime."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def versions_label(versions: dict[str, str]) -> str:
    return " · ".join(f"{name} v{v}" for name, v in sorted(versions.items())) or "unknown"


def window_of(run: RunInput) -> int:
    """The run's window length, from its trend records (they carry start and end)."""
    for t in run.trends:
        return int(t["window_end"] - t["window_start"])
    return DEFAULT_WINDOW_S


def span(run: RunInput, window_s: int) -> tuple[datetime, datetime] | None:
    """The run's event-time extent, whole windows, shared by every figure's time axis."""
    stamps = [utc(s["ts"]).timestamp() for s in run.scored] + [t["window_start"] for t in run.trends]
    if not stamps:
        return None
    lo, hi = min(stamps), max(stamps)
    return utc(lo - lo % window_s), utc(hi - hi % window_s + window_s)


def _reason_head(reason: str) -> str:
    """Group reasons by their kind, not their details (offsets, characters)."""
    head = reason.split(":")[0] if reason.startswith(("not JSON", "not UTF-8", "text too long")) else reason
    return head[:90]


def summarise(run: RunInput) -> Summary:
    stamps = [utc(s["ts"]) for s in run.scored]
    return Summary(
        scored_by_source=dict(sorted(Counter(s["source"] for s in run.scored).items())),
        dead_by_stage=dict(sorted(Counter(d.get("stage", "?") for d in run.dead).items())),
        top_dead_reasons=Counter(_reason_head(str(d.get("reason", ""))) for d in run.dead).most_common(8),
        fired=sum(1 for a in run.alerts if a["status"] == "firing"),
        resolved=sum(1 for a in run.alerts if a["status"] == "resolved"),
        model_versions=dict(Counter(versions_label(s.get("model_versions", {})) for s in run.scored)),
        first_ts=min(stamps, default=None),
        last_ts=max(stamps, default=None),
    )


def pick_keys(run: RunInput, busiest: int) -> list[tuple[str, str]]:
    """Every alerting key first (in order of firing), then the busiest tickers up to ``busiest`` keys."""
    keys: list[tuple[str, str]] = []
    for a in sorted(run.alerts, key=lambda a: a["window"]["start"]):
        k = (a["dimension"], a["key"])
        if a["status"] == "firing" and k not in keys:
            keys.append(k)
    volume: Counter[tuple[str, str]] = Counter()
    for t in run.trends:
        if t["dimension"] == "ticker":
            volume[(t["dimension"], t["key"])] += t["count"]
    for k, _ in volume.most_common():
        if len(keys) >= busiest:
            break
        if k not in keys:
            keys.append(k)
    return keys


def key_series(run: RunInput, dimension: str, key: str) -> KeySeries:
    rows = sorted((t for t in run.trends if t["dimension"] == dimension and t["key"] == key),
                  key=lambda t: t["window_start"])
    # a trend record carries the baseline after its window was folded in: the one it was judged
    # against is its predecessor's
    before: list[float | None] = [None, *(t["baseline"] for t in rows[:-1])]
    mine = [a for a in run.alerts if a["dimension"] == dimension and a["key"] == key]
    return KeySeries(
        dimension=dimension, key=key,
        starts=[utc(t["window_start"]) for t in rows],
        shares=[t["negative_share"] for t in rows],
        baselines=before,
        counts=[t["count"] for t in rows],
        alerting=[bool(t.get("alerting")) for t in rows],
        firing=[utc(a["window"]["start"]) for a in mine if a["status"] == "firing"],
        resolved=[utc(a["window"]["start"]) for a in mine if a["status"] == "resolved"],
    )


def volume_by_source(run: RunInput, window_s: int) -> dict[str, dict[datetime, int]]:
    """Messages scored per source per window of event time."""
    out: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for s in run.scored:
        out[s["source"]][_bucket(s["ts"], window_s)] += 1
    return {src: dict(sorted(c.items())) for src, c in sorted(out.items())}


def versions_over_time(run: RunInput, window_s: int) -> dict[str, dict[datetime, int]]:
    """Which model versions scored how many messages per window of event time."""
    out: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for s in run.scored:
        out[versions_label(s.get("model_versions", {}))][_bucket(s["ts"], window_s)] += 1
    return {v: dict(sorted(c.items())) for v, c in sorted(out.items())}


def _bucket(ts: str, window_s: int) -> datetime:
    epoch = utc(ts).timestamp()
    return datetime.fromtimestamp(epoch - epoch % window_s, UTC)


def alert_rows(run: RunInput) -> list[dict[str, Any]]:
    """Alerts in time order, resolved ones next to the firing they close."""
    return sorted(run.alerts, key=lambda a: (a["window"]["start"], a["status"] != "firing"))
