"""Event-time tumbling windows and the negative-surge detector, as pure functions.

Per key the state is small and incremental (counts, sums, a baseline, the open alert),
never a list of every message, so it fits a changelog-backed table and restarts cheaply.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal


@dataclass(frozen=True)
class DetectorConfig:
    window_s: int = 60
    allowed_lateness_s: int = 120
    baseline_alpha: float = 0.2
    baseline_prior: float = 0.2
    baseline_min_windows: int = 3
    min_volume: int = 5
    min_delta: float = 0.25
    z: float = 3.0
    critical_z: float = 6.0
    top_messages: int = 5


@dataclass(frozen=True)
class TrendEvent:
    """One scored message seen from one dimension (ticker, topic, source...)."""

    dimension: str
    key: str
    ts: float
    negative: bool
    p_negative: float
    message_id: str
    text: str
    source: str
    model_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Driver:
    message_id: str
    text: str
    source: str
    p_negative: float


@dataclass(frozen=True)
class Window:
    start: float
    count: int = 0
    negative: int = 0
    p_negative_sum: float = 0.0
    drivers: tuple[Driver, ...] = ()

    @property
    def share(self) -> float:
        return self.negative / self.count if self.count else 0.0


@dataclass(frozen=True)
class Firing:
    alert_id: str
    started: float
    severity: str
    peak_score: float


@dataclass(frozen=True)
class KeyState:
    """Open windows within the allowed lateness, the key's baseline, and its open alert."""

    windows: tuple[Window, ...] = ()
    watermark: float | None = None  # latest event time seen for this key
    closed_until: float | None = None  # end of the last closed window: earlier events are too late
    baseline: float | None = None
    closed_windows: int = 0
    firing: Firing | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> KeyState:
        if not data:
            return cls()
        windows = tuple(
            Window(start=w["start"], count=w["count"], negative=w["negative"], p_negative_sum=w["p_negative_sum"],
                   drivers=tuple(Driver(**d) for d in w["drivers"]))
            for w in data.get("windows", ())
        )
        f = data.get("firing")
        return cls(
            windows=windows, watermark=data.get("watermark"), closed_until=data.get("closed_until"),
            baseline=data.get("baseline"), closed_windows=data.get("closed_windows", 0),
            firing=Firing(**f) if f else None,
        )


@dataclass(frozen=True)
class ClosedWindow:
    """A finished window and the baseline after it: one record of the trends topic."""

    window: Window
    baseline: float
    alerting: bool


@dataclass(frozen=True)
class Update:
    """Everything one event changed: the new state, alert transitions and windows it closed."""

    state: KeyState
    transitions: list[Transition]
    closed: list[ClosedWindow]
    accepted: bool


@dataclass(frozen=True)
class Transition:
    """An alert state change: what the alerts topic receives."""

    status: Literal["firing", "resolved"]
    alert_id: str
    window: Window
    baseline: float
    score: float
    severity: str


def window_start(ts: float, size_s: int) -> float:
    return math.floor(ts / size_s) * size_s


def surge_score(window: Window, baseline: float) -> float:
    """Binomial z-score of the window's negative share against the baseline share."""
    if window.count == 0:
        return 0.0
    p = min(max(baseline, 0.02), 0.98)
    return (window.share - p) / math.sqrt(p * (1 - p) / window.count)


def alert_id(dimension: str, key: str, started: float) -> str:
    """Stable across redelivery and restarts: subscribers dedupe on it."""
    return hashlib.sha1(f"{dimension}|{key}|{started:.0f}".encode()).hexdigest()[:16]


def _close(state: KeyState, w: Window, cfg: DetectorConfig) -> tuple[KeyState, list[Transition]]:
    """Fold a closed window into the baseline, and resolve an alert once the share falls back."""
    base = cfg.baseline_prior if state.baseline is None else state.baseline
    closed = replace(state, closed_windows=state.closed_windows + 1, closed_until=w.start + cfg.window_s)
    firing = state.firing
    if firing is not None and w.start >= firing.started:  # windows before the surge still teach the baseline
        if w.share < base + cfg.min_delta / 2:  # hysteresis: resolve well below the firing line
            t = Transition("resolved", firing.alert_id, w, base, surge_score(w, base), firing.severity)
            return replace(closed, firing=None), [t]
        return closed, []  # the baseline is frozen while firing, so a surge never becomes the new normal
    weight = cfg.baseline_alpha * min(1.0, w.count / cfg.min_volume)
    return replace(closed, baseline=base + weight * (w.share - base)), []


def _add(w: Window, ev: TrendEvent, top: int) -> Window:
    drivers = w.drivers
    if ev.negative and top > 0:
        drivers = (*drivers, Driver(ev.message_id, ev.text, ev.source, round(ev.p_negative, 4)))
        drivers = tuple(sorted(drivers, key=lambda d: -d.p_negative)[:top])
    return Window(
        start=w.start, count=w.count + 1, negative=w.negative + int(ev.negative),
        p_negative_sum=w.p_negative_sum + ev.p_negative, drivers=drivers,
    )


def _maybe_fire(state: KeyState, w: Window, ev: TrendEvent, cfg: DetectorConfig) -> tuple[KeyState, list[Transition]]:
    base = cfg.baseline_prior if state.baseline is None else state.baseline
    if (
        state.firing is not None
        or state.closed_windows < cfg.baseline_min_windows
        or w.count < cfg.min_volume
        or w.share - base < cfg.min_delta
    ):
        return state, []
    score = surge_score(w, base)
    if score < cfg.z:
        return state, []
    severity = "critical" if score >= cfg.critical_z else "warning"
    aid = alert_id(ev.dimension, ev.key, w.start)
    fired = replace(state, firing=Firing(aid, w.start, severity, score))
    return fired, [Transition("firing", aid, w, base, score, severity)]


def apply_event(state: KeyState, ev: TrendEvent, cfg: DetectorConfig) -> Update:
    """Add one event to its own window; close the windows the watermark has passed by the lateness.

    Events up to ``allowed_lateness_s`` behind the key's watermark land in their own window, so
    results do not depend on partition interleaving; older ones are refused (``accepted`` False)
    and the caller dead-letters them.
    """
    start = window_start(ev.ts, cfg.window_s)
    if state.closed_until is not None and start < state.closed_until:
        return Update(state, [], [], False)
    windows = {w.start: w for w in state.windows}
    window = _add(windows.get(start, Window(start=start)), ev, cfg.top_messages)
    windows[start] = window
    watermark = ev.ts if state.watermark is None else max(state.watermark, ev.ts)
    state = replace(state, windows=tuple(windows[k] for k in sorted(windows)), watermark=watermark)
    state, out = _maybe_fire(state, window, ev, cfg)
    closed: list[ClosedWindow] = []
    while state.windows and state.windows[0].start + cfg.window_s + cfg.allowed_lateness_s <= watermark:
        oldest = state.windows[0]
        alerting = state.firing is not None and oldest.start >= state.firing.started
        state, resolved = _close(replace(state, windows=state.windows[1:]), oldest, cfg)
        out.extend(resolved)
        closed.append(ClosedWindow(oldest, state.baseline if state.baseline is not None else cfg.baseline_prior,
                                   alerting))
    return Update(state, out, closed, True)
