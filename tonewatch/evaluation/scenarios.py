"""Injected-surge scenarios for the stream detector: simulated keys, known events, the real ``apply_event``.

Each scenario kind (``scenario_feeds``) is a set of keys with something injected at known times: negative
surges that must alert, and positive surges, one-minute blips, volume bursts at the usual mix and the
market's daily open and close that must not. Every message goes through the same ``apply_event`` the
worker runs, so the figures are the worker's, not a model of it. Same seed, same figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.windows.detector import KeyState, apply_event
from tonewatch.core.sections import DetectorSettings
from tonewatch.evaluation.scenario_feeds import DAY, KINDS, MUST_ALERT, Plan, Surge, key_events, plan_keys

__all__ = ["KINDS", "MUST_ALERT", "Alert", "ScenarioResult", "Surge", "report_lines", "run_scenarios"]
COLUMNS = ("expect", "keys", "key_days", "injected", "alerts", "recall", "false_alerts_per_key_day", "delay_median_s")


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str  # the scenario kind of its key
    fired: float  # event time of the message that fired it
    window_start: float
    resolved: float | None
    reason: str


@dataclass
class ScenarioResult:
    window_s: int
    keys: dict[str, int]  # per kind
    key_days: dict[str, float]  # per kind
    surges: list[Surge]  # the injected events that must alert
    episodes: list[Surge]  # the injected events that must not
    alerts: list[Alert]
    matched: dict[int, list[Alert]] = field(default_factory=dict)  # surge index -> its alerts

    @property
    def false_alerts(self) -> list[Alert]:
        hit = {id(a) for alerts in self.matched.values() for a in alerts}
        return [a for a in self.alerts if id(a) not in hit]

    def summary(self) -> dict[str, Any]:
        """Overall figures, and the same per scenario kind under ``kinds``."""
        out = self._figures(range(len(self.surges)), self.alerts, sum(self.key_days.values()))
        out = {"keys": sum(self.keys.values()), "key_days": round(sum(self.key_days.values()), 2), **out}
        out["kinds"] = {
            kind: {"expect": "alert" if kind in MUST_ALERT else "silence", "keys": self.keys[kind],
                   "key_days": round(self.key_days[kind], 2),
                   "injected": sum(1 for s in self.surges + self.episodes if s.kind == kind),
                   **self._figures([i for i, s in enumerate(self.surges) if s.kind == kind],
                                   [a for a in self.alerts if a.kind == kind], self.key_days[kind], brief=True)}
            for kind in self.keys
        }
        return out

    def _figures(self, surges: Sequence[int], alerts: list[Alert], days: float, brief: bool = False
                 ) -> dict[str, Any]:
        """Recall over surges, false alerts per key-day, delays from surge start to the firing message."""
        detected = [i for i in surges if self.matched.get(i)]
        firsts = [(self.matched[i][0], self.surges[i]) for i in detected]
        delays = sorted(a.fired - s.start for a, s in firsts)
        # windows of the surge the detector had seen when it fired: 1 = its first window
        seen = sorted((a.window_start - s.start) / self.window_s + 1 for a, s in firsts)
        hit = {id(a) for i in surges for a in self.matched.get(i, [])}
        false = sum(1 for a in alerts if id(a) not in hit)
        out: dict[str, Any] = {
            "surges": len(surges),
            "alerts": len(alerts),
            "recall": round(len(detected) / len(surges), 4) if surges else None,
            "false_alerts": false,
            "false_alerts_per_key_day": round(false / days, 4) if days else 0.0,
            "delay_median_s": round(_quantile(delays, 0.5), 1) if delays else None,
        }
        if brief:
            return out
        true_alerts = len(hit)
        resolved = sum(1 for i in detected if all(a.resolved is not None for a in self.matched[i]))
        return {
            **out,
            "precision": round(true_alerts / len(alerts), 4) if alerts else 1.0,
            "delay_p90_s": round(_quantile(delays, 0.9), 1) if delays else None,
            "delay_median_windows": _quantile(seen, 0.5) if seen else None,
            "alerts_per_surge": round(true_alerts / len(detected), 3) if detected else 0.0,
            "resolved_share": round(resolved / len(detected), 4) if detected else 0.0,
        }


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return math.nan
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def _run_key(plan: Plan, rng: np.random.Generator, cfg: DetectorSettings) -> list[Alert]:
    """Every message of the key through ``apply_event``; its alerts, resolved or still open."""
    alerts: list[Alert] = []
    state, open_alert = KeyState(), None
    for ev in key_events(rng, plan, cfg.window_s):
        u = apply_event(state, ev, cfg)
        state = u.state
        for t in u.transitions:
            if t.status == "firing":
                open_alert = Alert(plan.key, plan.kind, ev.ts, t.window.start, None, t.reason)
            elif open_alert is not None:
                alerts.append(Alert(plan.key, plan.kind, open_alert.fired, open_alert.window_start, ev.ts,
                                    open_alert.reason))
                open_alert = None
    if open_alert is not None:
        alerts.append(open_alert)
    return alerts


def run_scenarios(cfg: DetectorSettings, keys: int = 12, hours: float = 6.0, seed: int = 7,
                  kinds: Sequence[str] = KINDS) -> ScenarioResult:
    """``keys`` scenarios of each kind (a ``pair`` is two keys), ``hours`` of event time per key (two days
    for ``seasonal``). Each key draws from its own generator seeded by (seed, kind, index): same seed, same figures."""
    windows = int(hours * 3600 // cfg.window_s)
    result = ScenarioResult(cfg.window_s, {}, {}, [], [], [])
    for kind in kinds:
        result.keys[kind], result.key_days[kind] = 0, 0.0
        for i in range(keys):
            rng = np.random.default_rng([seed, KINDS.index(kind), i])
            for plan in plan_keys(rng, kind, i, windows, cfg.window_s):
                result.keys[kind] += 1
                result.key_days[kind] += len(plan.lam) * cfg.window_s / DAY
                (result.surges if kind in MUST_ALERT else result.episodes).extend(plan.injected)
                result.alerts.extend(_run_key(plan, rng, cfg))
    grace = cfg.window_s + cfg.allowed_lateness_s
    for i, s in enumerate(result.surges):  # an alert belongs to a surge if it fired during it (or just after)
        result.matched[i] = [a for a in result.alerts if a.key == s.key and s.start <= a.window_start < s.end + grace]
    return result


def report_lines(summary: dict[str, Any]) -> list[str]:
    """The overall figures, one per line, then a table with a row per scenario kind."""
    overall = {k: v for k, v in summary.items() if k != "kinds"}
    width = max(len(k) for k in overall)
    lines = [f"{k:<{width}}  {v}" for k, v in overall.items()] + [""]
    widths = [max(len(c), 7) + 2 for c in COLUMNS]
    lines.append("kind      " + "".join(f"{c:>{w}}" for c, w in zip(COLUMNS, widths, strict=True)))
    for kind, row in summary["kinds"].items():
        cells = ("-" if row[c] is None else str(row[c]) for c in COLUMNS)
        lines.append(f"{kind:<10}" + "".join(f"{v:>{w}}" for v, w in zip(cells, widths, strict=True)))
    return lines
