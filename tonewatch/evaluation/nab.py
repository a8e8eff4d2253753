"""Score NAB-format count series (timestamp,value) with the detector's volume evidence and the market's clock.

NAB's scorer rewards the first detection in each labelled window and charges every later point
above its threshold, so the score follows the alert lifecycle: a point's surprise while the series is
calm, 0 while an alert is open or the key is quiet after one. A score of 0.5 or more is where it fires.

Per point (benchmarks/detector.md has what each part is worth on NAB realTweets):

- **expected count**: the key's level (the stream's robust EWMA, learnt from ``count / factor``) times the
  market-clock factor of the point's hour (``tonewatch/evaluation/seasonal.py``);
- **evidence**: the point's z is the smaller of the robust z and the negative-binomial tail at the level's
  own dispersion (tweet counts are bursty: a Poisson tail makes every burst a 10-sigma event); the count
  of the last ``sustained_s`` tested as one, against the sum of its expectations, stands in when larger
  (a quiet key's surge is a few extra a point, for hours). z's past the ratio bar add up, less ``drift``
  each, to the change-point CUSUM;
- **novelty**: the CUSUM must also pass the key's highest daily peak of the last ``novelty_days``: on a
  bursty key its everyday bursts are its normal, and a desk is paged for what it has not seen lately;
- **lifecycle**: an alert is open until a point falls below half the bars, and the key then stays quiet
  for ``cooldown`` points and until ``quiet_s`` after the alert fired.
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from streams.windows.baseline import Level, logistic, update_level
from streams.windows.changepoint import dispersion, negatives_z
from tonewatch.core.errors import InvalidInput
from tonewatch.evaluation import seasonal
from tonewatch.evaluation.nab_evidence import (
    Evidence,
    Kind,
    count_evidence,
    metric_evidence,
    metric_scale,
    series_kind,
)

NAB_STEP_S = 300.0  # NAB's usual sampling: the times assumed when a caller has none
DAY_S = 86400.0


@dataclass(frozen=True)
class NabConfig:
    """Rates and counts are per point, whatever the sampling: an estimate needs so many points (measured:
    rescaling them to an hourly or half-hourly series' step in time detected later, benchmarks/detector.md)."""

    alpha: float = 0.05  # EWMA weight of the level per point (5-minute points: about 1.5 hours of memory)
    dev_alpha: float = 0.002  # EWMA weight of the spread: about 2 days, so bursts are judged against a long run
    z: float = 4.0  # the least evidence at which the detector fires (score 0.5)
    min_ratio: float = 2.0  # and a count must reach this multiple of its expectation (or fall to its inverse)
    clip: float = 3.0  # winsorise baseline updates at this many scales
    cooldown: int = 12  # points after a resolve with no new alert
    width: float = 1.0  # logistic width, in z units
    drift: float = 2.0  # change-point allowance per point (detector.change_drift): a lone point needs z + drift
    clock_buckets: int = 24  # market-clock layout (seasonal.LAYOUTS); 0: no clock
    clock_alpha: float = 0.1  # EWMA weight of a point in its clock bucket: 12 points an hour, about a day's memory
    clock_min_seen: float = 12.0  # points a bucket needs before its own factor is trusted fully
    sustained_s: float = 3600.0  # the last hour's count is also tested as one; 0: points only
    novelty_days: int = 14  # fire only past the key's highest daily peak of this many days; 0: off
    quiet_s: float = DAY_S  # after an alert fires the key stays quiet this long (event time)
    clock_outlier_weight: float = 1.0  # weight of a point past the ratio bar in its clock bucket
    level_outlier_weight: float = 1.0  # and in the level
    count_drops: bool = True  # a count falling to 1 / min_ratio of its expectation is evidence too
    first_day_cap: float = 3.0  # the first day's peak counts up to this many z bars towards the novelty bar
    two_sided: bool = True  # a metric (not a count) is judged either way; False: rises only
    firing_weight: float = 0.1  # while an alert is open the baselines learn at this weight; 0: frozen


@dataclass
class _Series:
    """One series' state between points: baselines, the last hour, daily peaks, the alert lifecycle."""

    cfg: NabConfig
    kind: Kind = Kind.COUNTS
    level: Level | None = None
    clock: seasonal.Profile = ()
    hour: deque[tuple[float, float, float]] = field(default_factory=deque)  # (time, count, expected)
    hour_full: bool = False  # the hour deque spans a whole ``sustained_s``
    peaks: deque[float] = field(default_factory=deque)  # highest evidence of each past day
    day: int | None = None
    today: float = 0.0
    learnt: bool = False  # a whole day has passed since the first point
    firing: int = 0  # +1: an alert on a rise is open, -1: on a fall, 0: none
    cooldown: int = 0
    quiet_until: float = -math.inf
    rise: float = 0.0  # the change-point evidence of a rise
    fall: float = 0.0  # and of a fall

    def __post_init__(self) -> None:
        clocked = self.cfg.clock_buckets and self.kind is not Kind.SIGNED
        self.clock = seasonal.new(self.cfg.clock_buckets) if clocked else ()
        self.peaks = deque(maxlen=max(self.cfg.novelty_days, 1))

    def factor(self, t: float) -> float:
        return seasonal.factor(self.clock, t, min_seen=self.cfg.clock_min_seen) if self.clock else 1.0

    def sustained_z(self, t: float, x: float, expected: float, level: Level) -> float:
        """z of the last ``sustained_s`` counted as one, when it reaches the ratio bar (else -inf)."""
        cfg = self.cfg
        if cfg.sustained_s <= 0:
            return -math.inf
        self.hour.append((t, x, expected))
        while self.hour and self.hour[0][0] <= t - cfg.sustained_s:
            self.hour.popleft()
            self.hour_full = True
        total, mean = sum(h[1] for h in self.hour), sum(h[2] for h in self.hour)
        if not (self.hour_full and math.isfinite(total) and total >= cfg.min_ratio * mean):
            return -math.inf
        return negatives_z(round(total), mean, dispersion(level))

    def evidence(self, t: float, x: float, level: Level) -> Evidence:
        """The point's evidence for its kind; a count's last hour stands in for a rise when it says more."""
        cfg = self.cfg
        if self.kind is not Kind.COUNTS:
            return metric_evidence(x, level, cfg.z / 2, falls=cfg.two_sided)
        ev = count_evidence(x, level, cfg.min_ratio, cfg.count_drops)
        hour_z = self.sustained_z(t, x, level.mean, level)
        return replace(ev, up=hour_z, big_up=True) if hour_z > ev.up else ev

    def calm(self, x: float, level: Level, ev: Evidence) -> bool:
        """Whether the open alert resolves: its side's z below half the bar (a count: or halfway back)."""
        z, _ = ev.toward(self.firing)
        if z < self.cfg.z / 2:
            return True
        if self.kind is not Kind.COUNTS:
            return False
        halfway = (1 + self.cfg.min_ratio) / 2
        return x < halfway * level.mean if self.firing > 0 else x * halfway > level.mean

    def bar(self, t: float, z: float) -> float:
        """The evidence a point needs: ``z``, or the highest daily peak of the last ``novelty_days``."""
        day = math.floor(t / DAY_S)
        if self.day is not None and day != self.day:
            first = self.today if self.learnt else min(self.today, self.cfg.first_day_cap * self.cfg.z)
            self.peaks.append(first)  # the first day's z's are the clock still learning: capped
            self.learnt, self.today = True, 0.0
        self.day = day
        self.today = max(self.today, z)
        if self.cfg.novelty_days <= 0 or len(self.peaks) < 2:
            return self.cfg.z
        return max(self.cfg.z, max(self.peaks))

    def learn(self, t: float, x: float, f: float, outlier: bool = False, weight: float = 1.0) -> None:
        """Fold the point into the level (deseasonalised) and its clock bucket at ``weight``; a point past
        the ratio bar teaches them at the ``*_outlier_weight`` (1: as any point, which measured best on NAB)."""
        cfg = self.cfg
        if self.clock and self.level is not None:
            cw = weight * (cfg.clock_outlier_weight if outlier else 1.0)
            self.clock = seasonal.update(self.clock, t, x, self.level.mean, alpha=cfg.clock_alpha, weight=cw)
        lw = weight * (cfg.level_outlier_weight if outlier else 1.0)
        scale = None if self.kind is Kind.COUNTS or self.level is None else metric_scale(self.level)
        self.level = update_level(self.level, x / f, cfg.alpha, cfg.clip, weight=lw, dev_alpha=cfg.dev_alpha,
                                  scale=scale)


def _fire(s: _Series, t: float, ev: Evidence, bar: float) -> float:
    """Add the point to both change-point sums; fire on the larger when it passes the bar. Returns the score."""
    cfg = s.cfg
    s.rise = max(s.rise + (ev.up if ev.big_up else 0.0) - cfg.drift, 0.0)
    s.fall = max(s.fall + (ev.down if ev.big_down else 0.0) - cfg.drift, 0.0)
    direction = 1 if s.rise >= s.fall else -1
    evidence, big = max(s.rise, s.fall), ev.toward(direction)[1]
    score = logistic(evidence - bar, 0.0, cfg.width)
    if not (big and evidence >= bar):
        return min(score, 0.5) * (1.0 if big else 0.5)
    s.firing, s.rise, s.fall, s.quiet_until = direction, 0.0, 0.0, t + cfg.quiet_s
    return score


def _score(s: _Series, t: float, x: float) -> float:
    """One point's score, then the point folded into the series' state."""
    cfg, f = s.cfg, s.factor(t)
    if s.level is None:
        s.learn(t, x, f)
        return 0.0
    level = Level(s.level.mean * f, s.level.dev * f, s.level.n)  # the level at this hour of the clock
    ev = s.evidence(t, x, level)
    bar = s.bar(t, max(ev.up if ev.big_up else 0.0, ev.down if ev.big_down else 0.0))
    if s.firing:  # the baselines learn slowly while firing: a new normal ends the alert in about a day
        if s.calm(x, level, ev):
            s.firing, s.cooldown = 0, cfg.cooldown
        s.learn(t, x, f, weight=cfg.firing_weight)
        return 0.0
    score = 0.0
    if s.cooldown > 0 or t < s.quiet_until:
        s.cooldown = max(s.cooldown - 1, 0)
    else:
        score = _fire(s, t, ev, bar)
    s.learn(t, x, f, ev.big_up or ev.big_down)
    return score


def surge_scores(values: Sequence[float], cfg: NabConfig, times: Sequence[float] | None = None) -> list[float]:
    """One anomaly score in [0, 1] per value, causal: each depends only on the values before it (the
    series' kind is read from the whole of it: a property of the metric, not of time).

    ``times`` are the points' epoch seconds (UTC); without them, NAB's 5-minute steps from the epoch.
    """
    ts = times if times is not None else [i * NAB_STEP_S for i in range(len(values))]
    s = _Series(cfg, series_kind(values))
    return [_score(s, float(t), float(x)) for t, x in zip(ts, values, strict=True)]


class NotNabFormat(InvalidInput):
    """A CSV without the timestamp,value header: reported and skipped, never half-scored."""


def _epoch(stamp: str) -> float:
    """NAB's ``YYYY-MM-DD HH:MM:SS`` (UTC) as epoch seconds."""
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def score_file(src: Path, dst: Path, cfg: NabConfig) -> int:
    """Read timestamp,value; write timestamp,value,anomaly_score. Returns the rows written."""
    with src.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"timestamp", "value"} - set(reader.fieldnames or ())
        if missing:
            raise NotNabFormat(f"missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    try:
        values = [float(r["value"]) for r in rows]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{src}: non-numeric value ({exc})") from exc
    try:
        times = [_epoch(r["timestamp"]) for r in rows]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{src}: bad timestamp ({exc})") from exc
    scores = surge_scores(values, cfg, times)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["timestamp", "value", "anomaly_score"])
        for r, s in zip(rows, scores, strict=True):
            out.writerow([r["timestamp"], r["value"], f"{s:.6f}"])
    return len(rows)


def score_tree(data: Path, out: Path, cfg: NabConfig,
               prefix: str = "") -> tuple[list[tuple[Path, int]], list[tuple[Path, str]]]:
    """Score every NAB-format CSV under ``data`` into ``out``, mirroring relative paths (each file name
    after ``prefix``: NAB's results layout wants ``<detector>_<file>``).

    Returns the files scored (with their rows) and the CSVs skipped (with why); a file with a
    NAB header but a bad value raises, since a partial benchmark would be silently wrong.
    """
    files = sorted(p.relative_to(data) for p in data.rglob("*.csv") if p.is_file())
    scored: list[tuple[Path, int]] = []
    skipped: list[tuple[Path, str]] = []
    for rel in files:
        try:
            scored.append((rel, score_file(data / rel, out / rel.with_name(prefix + rel.name), cfg)))
        except NotNabFormat as exc:
            skipped.append((rel, str(exc)))
    if not scored:
        raise ValueError(f"no NAB-format CSV (timestamp,value) under {data}")
    return scored, skipped
