"""Injected-surge scenarios for the stream detector: calm keys, known surges, the real ``apply_event``.

Calm keys draw a Poisson volume per window around a daily cycle and a binomial negative share
around their own normal; some keys get one surge of known start and end: the share jumps, the
volume jumps at the normal share, or both. Every message goes through the same ``apply_event``
the worker runs, so the figures are the worker's, not a model of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streams.windows.detector import KeyState, TrendEvent, apply_event
from tonewatch.core.sections import DetectorSettings

KINDS = ("share", "volume", "both")


@dataclass(frozen=True)
class Surge:
    key: str
    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class Alert:
    key: str
    fired: float  # event time of the message that fired it
    window_start: float
    resolved: float | None
    reason: str


@dataclass
class ScenarioResult:
    keys: int
    days: float
    surges: list[Surge]
    alerts: list[Alert]
    matched: dict[int, list[Alert]] = field(default_factory=dict)  # surge index -> its alerts

    @property
    def false_alerts(self) -> list[Alert]:
        hit = {id(a) for alerts in self.matched.values() for a in alerts}
        return [a for a in self.alerts if id(a) not in hit]

    def summary(self) -> dict[str, float | int]:
        """Precision over alerts, recall over surges, delays from surge start to the firing message."""
        detected = [i for i, a in self.matched.items() if a]
        delays = sorted(self.matched[i][0].fired - self.surges[i].start for i in detected)
        true_alerts = sum(len(a) for a in self.matched.values())
        resolved = sum(1 for i in detected if all(a.resolved is not None for a in self.matched[i]))
        return {
            "keys": self.keys,
            "surges": len(self.surges),
            "alerts": len(self.alerts),
            "precision": round(true_alerts / len(self.alerts), 4) if self.alerts else 1.0,
            "recall": round(len(detected) / len(self.surges), 4) if self.surges else 1.0,
            "false_alerts_per_key_day": round(len(self.false_alerts) / (self.keys * self.days), 4),
            "delay_median_s": round(_quantile(delays, 0.5), 1),
            "delay_p90_s": round(_quantile(delays, 0.9), 1),
            "alerts_per_surge": round(true_alerts / len(detected), 3) if detected else 0.0,
            "resolved_share": round(resolved / len(detected), 4) if detected else 0.0,
        }


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return math.nan
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def _key_events(rng: np.random.Generator, key: str, windows: int, window_s: int,
                surge: Surge | None) -> list[TrendEvent]:
    rate = float(np.exp(rng.uniform(np.log(4), np.log(60))))  # messages per window at the daily mean
    share = float(rng.uniform(0.05, 0.3))
    phase = float(rng.uniform(0, 2 * math.pi))
    events: list[TrendEvent] = []
    for w in range(windows):
        start = w * window_s
        lam = rate * (1 + 0.5 * math.sin(2 * math.pi * start / 86400 + phase))
        p = share
        if surge is not None and surge.start <= start < surge.end:
            if surge.kind in ("volume", "both"):
                lam *= 4
            if surge.kind in ("share", "both"):
                p = min(0.95, share + 0.45)
        n = int(rng.poisson(lam))
        neg = rng.random(n) < p
        ts = np.sort(rng.uniform(start, start + window_s, n))
        events.extend(TrendEvent("ticker", key, float(t), bool(b), 0.9 if b else 0.1, f"{key}-{w}-{i}", "", "news")
                      for i, (t, b) in enumerate(zip(ts, neg, strict=True)))
    return events


def run_scenarios(cfg: DetectorSettings, keys: int = 40, hours: float = 6.0, seed: int = 7) -> ScenarioResult:
    """Half the keys get one surge of 5 to 20 windows after a warm-up of up to 2 hours; the rest stay calm."""
    rng = np.random.default_rng(seed)
    windows = int(hours * 3600 // cfg.window_s)
    surges: list[Surge] = []
    alerts: list[Alert] = []
    for k in range(keys):
        key = f"K{k:03d}"
        surge = None
        if k % 2 == 0:
            warm = min(2 * 3600 // cfg.window_s, windows // 3)  # the baselines learn first
            start = float(rng.integers(warm, windows - 30) * cfg.window_s)
            surge = Surge(key, KINDS[(k // 2) % 3], start, start + float(rng.integers(5, 21)) * cfg.window_s)
            surges.append(surge)
        state, open_alert = KeyState(), None
        for ev in _key_events(rng, key, windows, cfg.window_s, surge):
            u = apply_event(state, ev, cfg)
            state = u.state
            for t in u.transitions:
                if t.status == "firing":
                    open_alert = Alert(key, ev.ts, t.window.start, None, t.reason)
                elif open_alert is not None:
                    alerts.append(Alert(key, open_alert.fired, open_alert.window_start, ev.ts, open_alert.reason))
                    open_alert = None
        if open_alert is not None:
            alerts.append(open_alert)
    result = ScenarioResult(keys, hours / 24, surges, alerts)
    grace = cfg.window_s + cfg.allowed_lateness_s
    for i, s in enumerate(surges):  # an alert belongs to a surge if it fired during it (or just after: late close)
        result.matched[i] = [a for a in alerts if a.key == s.key and s.start <= a.window_start < s.end + grace]
    return result
