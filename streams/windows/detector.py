"""Event-time tumbling windows and the negative-surge detector, as pure functions.

Partials are added to their window; a window closes when the watermark passes its end plus the allowed
lateness, and only then is it judged: its content, and so the alert, depend on the events alone, never on
how fast they arrived (docs/decisions/2026-12-07-event-time-watermarks.md). Per key the state is small and
incremental (counts, sums, a baseline, the open alert; streams/windows/state.py), so it fits a
changelog-backed table.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Literal

from streams.windows import changepoint, rolling, spread
from streams.windows.baseline import binomial_z, decay_level, update_level, update_share
from streams.windows.changepoint import Verdict, judge
from streams.windows.rolling import RollingView
from streams.windows.state import Driver, Firing, KeyState, Partial, TrendEvent, Window
from tonewatch.core.sections import DetectorSettings

# the state's types, imported from here by the agent, the evaluations and the tests
__all__ = ["ClosedWindow", "Driver", "Firing", "KeyState", "Partial", "Transition", "TrendEvent", "Update", "Window",
           "advance", "alert_id", "apply_event", "apply_partial", "next_close", "surge_score", "top_drivers",
           "window_start"]


@dataclass(frozen=True)
class ClosedWindow:
    """A finished window and the baseline after it: one record of the trends topic."""

    window: Window
    baseline: float
    alerting: bool
    rolling: RollingView | None = None  # the span of cfg.rolling_s ending with this window
    corrected: float | None = None  # the corrected share's baseline; None: the counted one's


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
    reason: str = "share"  # share, volume or both: which baseline the window broke
    corrected: float | None = None  # the corrected share's baseline; None: the counted one's


def window_start(ts: float, size_s: int) -> float:
    return math.floor(ts / size_s) * size_s


def surge_score(window: Window, baseline: float) -> float:
    """Binomial z-score of the window's negative share against the baseline share."""
    return binomial_z(window.share, window.count, baseline)


def alert_id(dimension: str, key: str, started: float) -> str:
    """Stable across redelivery and restarts: subscribers dedupe on it."""
    return hashlib.sha1(f"{dimension}|{key}|{started:.0f}".encode()).hexdigest()[:16]


def _excess(state: KeyState, w: Window, cfg: DetectorSettings) -> float:
    """The window's corrected share over the key's corrected baseline: the surge's size in true negatives."""
    return w.corrected_share - (cfg.baseline_prior if state.corrected is None else state.corrected)


def _verdict(state: KeyState, w: Window, dimension: str, cfg: DetectorSettings, strictness: float = 1.0) -> Verdict:
    """Which baselines the window breaks (share, volume or both) and the larger z; ``strictness`` below 1
    lowers every bar, for the hysteresis of resolving (firing is the change-point evidence's call)."""
    base = cfg.baseline_prior if state.baseline is None else state.baseline
    return judge(base, state.volume, w.count, w.negative, min_volume=cfg.min_volume_for(dimension),
                 min_delta=cfg.min_delta * strictness, min_ratio=1 + (cfg.volume_min_ratio - 1) * strictness,
                 volume_min_windows=cfg.volume_min_windows, z=cfg.z * strictness, excess=_excess(state, w, cfg))


def _calm(state: KeyState, w: Window, dimension: str, cfg: DetectorSettings) -> bool:
    """Whether a window ends an alert: below half of every bar (hysteresis). A window too small to test
    whose share is still past half the bar is no sign of calm: a quiet key's surge has such windows."""
    if w.count < cfg.min_volume_for(dimension) and _excess(state, w, cfg) >= cfg.min_delta * 0.5:
        return False
    return _verdict(state, w, dimension, cfg, strictness=0.5).reason is None


def _close(state: KeyState, w: Window, dimension: str, cfg: DetectorSettings, weight: float = 1.0
           ) -> tuple[KeyState, list[Transition]]:
    """Fold a closed window into the baselines, and resolve an alert once the window is calm again."""
    base = cfg.baseline_prior if state.baseline is None else state.baseline
    gap = 0 if state.closed_until is None else round((w.start - state.closed_until) / cfg.window_s)
    closed = replace(state, closed_windows=state.closed_windows + 1, closed_until=w.start + cfg.window_s)
    firing = state.firing
    if firing is not None and w.start >= firing.started:  # windows before the surge still teach the baseline
        if _calm(state, w, dimension, cfg):
            t = Transition("resolved", firing.alert_id, w, base, surge_score(w, base), firing.severity, firing.reason,
                           state.corrected)
            return replace(closed, firing=None, cooldown_until=w.start + cfg.window_s + cfg.cooldown_s), [t]
        return closed, []  # the baselines are frozen while firing, so a surge never becomes the new normal
    volume = state.volume if state.volume is None else decay_level(state.volume, gap, cfg.baseline_alpha)
    volume = update_level(volume, w.negative, cfg.baseline_alpha, cfg.robust_clip, weight)
    # a young key learns at the rate of a running mean (the prior counts as one window), as its volume does:
    # a key of 40 minutes is judged against its own share, not one still dragged towards the prior
    alpha = max(cfg.baseline_alpha, 1.0 / (state.closed_windows + 2))
    share = update_share(base, w.share, w.count, alpha * weight, cfg.min_volume, cfg.min_delta)
    corrected = update_share(cfg.baseline_prior if state.corrected is None else state.corrected, w.corrected_share,
                             w.count, alpha * weight, cfg.min_volume, cfg.min_delta)
    return replace(closed, baseline=share, corrected=corrected, volume=volume), []


def top_drivers(drivers: tuple[Driver, ...], top: int) -> tuple[Driver, ...]:
    """The ``top`` most negative, earlier first among equals (a stable sort): the same whether drivers
    are merged one at a time or a batch at once."""
    return tuple(sorted(drivers, key=lambda d: -d.p_negative)[:top]) if top > 0 else ()


def _add(w: Window, p: Partial, top: int, window_s: int) -> Window:
    newer = w.latest is None or p.ts >= w.latest
    return Window(
        start=w.start, count=w.count + p.count, negative=w.negative + p.negative,
        p_negative_sum=w.p_negative_sum + p.p_negative_sum,
        adjusted_sum=w.adjusted_sum + (p.negative if p.adjusted_sum is None else p.adjusted_sum),
        drivers=top_drivers(w.drivers + p.drivers, top) if p.drivers else w.drivers,
        latest=p.ts if newer else w.latest, model_versions=p.model_versions if newer else w.model_versions,
        slices=spread.merge(_slices(w, window_s) if w.count else (),
                            p.slices or spread.whole(p.count, p.negative, p.ts, w.start, window_s)),
    )


def _missing(state: KeyState, w: Window, cfg: DetectorSettings) -> int:
    """Windows with no messages between the last closed one and ``w``."""
    return 0 if state.closed_until is None else max(round((w.start - state.closed_until) / cfg.window_s), 0)


def _slices(w: Window, window_s: int) -> spread.Slices:
    """The window's slices; a window from a state written before them has its counts in its latest slice."""
    return w.slices or spread.whole(w.count, w.negative, w.latest, w.start, window_s)


def _fire(state: KeyState, w: Window, dimension: str, key: str, cfg: DetectorSettings
          ) -> tuple[KeyState, list[Transition], float]:
    """Fold the window into the key's change-point evidence and fire once it says so, unless the key is
    firing, young or cooling down (then no evidence builds). Also the weight the baselines learn it with.
    ``state.recent_slices`` already ends with ``w``'s."""
    if (
        state.firing is not None
        or state.closed_windows < cfg.baseline_min_windows
        or (state.cooldown_until is not None and w.start < state.cooldown_until)
    ):
        return replace(state, evidence=0.0, shift=0.0, shift_negatives=0, run=(0.0, 0)), [], 1.0
    base = cfg.baseline_prior if state.baseline is None else state.baseline
    s = changepoint.step(state.evidence, state.shift, state.shift_negatives, _missing(state, w, cfg), base,
                         state.volume, w.count, w.negative, cfg.min_volume_for(dimension), cfg, state.run,
                         _excess(state, w, cfg), state.recent_slices)
    state = replace(state, evidence=s.evidence, shift=s.shift, shift_negatives=s.shift_negatives, run=s.run)
    weight = changepoint.OUTLIER_WEIGHT if s.outlier else 1.0
    if s.reason is None:
        return state, [], weight
    severity = "critical" if s.z >= cfg.critical_z else "warning"
    aid = alert_id(dimension, key, w.start)
    fired = replace(state, firing=Firing(aid, w.start, severity, s.z, s.reason))
    return fired, [Transition("firing", aid, w, base, s.z, severity, s.reason, state.corrected)], weight


def apply_partial(state: KeyState, ev: Partial, cfg: DetectorSettings) -> Update:
    """Add a partial to its window; a partial for a window already closed is refused (``accepted`` False)
    and the caller dead-letters it."""
    start = window_start(ev.ts, cfg.window_s)
    if state.closed_until is not None and start < state.closed_until:
        return Update(state, [], [], False)
    windows = {w.start: w for w in state.windows}
    windows[start] = _add(windows.get(start, Window(start=start)), ev, cfg.top_messages, cfg.window_s)
    return Update(replace(state, windows=tuple(windows[k] for k in sorted(windows))), [], [], True)


def advance(state: KeyState, watermark: float, dimension: str, key: str, cfg: DetectorSettings) -> Update:
    """Close, oldest first, every window whose end plus the allowed lateness the watermark has reached:
    each is judged (fire), then folded into the baselines (resolve), and leaves a trends record."""
    watermark = watermark if state.watermark is None else max(state.watermark, watermark)
    state = replace(state, watermark=watermark)
    out: list[Transition] = []
    closed: list[ClosedWindow] = []
    while state.windows and state.windows[0].start + cfg.window_s + cfg.allowed_lateness_s <= watermark:
        oldest = state.windows[0]
        history = spread.push(state.recent_slices, _slices(oldest, cfg.window_s), _missing(state, oldest, cfg))
        state = replace(state, windows=state.windows[1:], recent_slices=history)
        state, fired, weight = _fire(state, oldest, dimension, key, cfg)
        alerting = state.firing is not None and oldest.start >= state.firing.started
        state, resolved = _close(state, oldest, dimension, cfg, weight)
        recent = rolling.push(state.recent, oldest.start, oldest.count, oldest.negative, cfg.window_s, cfg.rolling_s)
        state = replace(state, recent=recent)
        out.extend(fired + resolved)
        closed.append(ClosedWindow(oldest, cfg.baseline_prior if state.baseline is None else state.baseline,
                                   alerting, rolling.view(recent, cfg.rolling_s), state.corrected))
    return Update(state, out, closed, True)


def next_close(state: KeyState, cfg: DetectorSettings) -> float | None:
    """The watermark at which the key's oldest open window closes; None without open windows."""
    return state.windows[0].start + cfg.window_s + cfg.allowed_lateness_s if state.windows else None


def apply_event(state: KeyState, ev: TrendEvent, cfg: DetectorSettings) -> Update:
    """One key's events in arrival order, with the key's own latest event time as the watermark: how the
    offline evaluations and tests drive the detector."""
    added = apply_partial(state, Partial.of(ev), cfg)
    if not added.accepted:
        return added
    watermark = ev.ts if state.watermark is None else max(state.watermark, ev.ts)
    return advance(added.state, watermark, ev.dimension, ev.key, cfg)
