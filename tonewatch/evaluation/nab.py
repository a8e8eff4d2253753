"""Score NAB-format count series (timestamp,value) with the detector's negative-volume baseline.

NAB's scorer rewards the first detection in each labelled window and charges every later point
above its threshold, so the score follows the alert lifecycle: a point's surprise while the series is
calm, 0 while an alert is open or cooling down. A score of 0.5 or more is exactly where it fires.

The surprise is the stream detector's volume evidence (streams/windows/changepoint.py): a point's z is
the smaller of the robust z and the negative-binomial tail at the level's own dispersion (tweet counts
are bursty: a Poisson tail makes every burst a 10-sigma event), and the z's of consecutive points past
the ratio bar add up, less ``drift`` each, to a change-point CUSUM that fires at ``z``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.windows.baseline import Level, count_z, logistic, update_level
from streams.windows.changepoint import dispersion, negatives_z
from tonewatch.core.errors import InvalidInput


@dataclass(frozen=True)
class NabConfig:
    alpha: float = 0.05  # EWMA weight of the level per point (5-minute points: about 1.5 hours of memory)
    dev_alpha: float = 0.002  # EWMA weight of the spread: about 2 days, so bursts are judged against a long run
    z: float = 4.0  # robust z of the count at which the detector fires (score 0.5)
    min_ratio: float = 2.0  # and the count must reach this multiple of its baseline
    clip: float = 3.0  # winsorise baseline updates at this many scales
    cooldown: int = 12  # points after a resolve with no new alert
    width: float = 1.0  # logistic width, in z units
    drift: float = 2.0  # change-point allowance per point (detector.change_drift): a lone point needs z + drift


def point_z(x: float, level: Level) -> float:
    """Robust z of a count, never more than its negative-binomial tail at the level's dispersion allows."""
    z = count_z(x, level)
    if x > level.mean and math.isfinite(x):
        z = min(z, negatives_z(round(x), level.mean, dispersion(level)))
    return z


def surge_scores(values: Sequence[float], cfg: NabConfig) -> list[float]:
    """One anomaly score in [0, 1] per value, causal: each depends only on the values before it."""
    level: Level | None = None
    firing, cooldown, evidence = False, 0, 0.0
    scores: list[float] = []
    for x in values:
        if level is None:
            scores.append(0.0)
            level = update_level(None, x, cfg.alpha, cfg.clip, dev_alpha=cfg.dev_alpha)
            continue
        z = point_z(x, level)
        if firing:  # the baseline is frozen while firing, as in the stream detector
            scores.append(0.0)
            if z < cfg.z / 2 or x < (1 + cfg.min_ratio) / 2 * level.mean:
                firing, cooldown = False, cfg.cooldown
            continue
        if cooldown > 0:
            cooldown -= 1
            scores.append(0.0)
        else:
            big = x >= cfg.min_ratio * level.mean
            evidence = max(evidence + (z if big else 0.0) - cfg.drift, 0.0)
            firing = big and evidence >= cfg.z
            score = logistic(evidence, cfg.z, cfg.width)
            scores.append(score if firing else min(score, 0.5) * (1.0 if big else 0.5))
            evidence = 0.0 if firing else evidence
        level = update_level(level, x, cfg.alpha, cfg.clip, dev_alpha=cfg.dev_alpha)
    return scores


class NotNabFormat(InvalidInput):
    """A CSV without the timestamp,value header: reported and skipped, never half-scored."""


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
    scores = surge_scores(values, cfg)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["timestamp", "value", "anomaly_score"])
        for r, s in zip(rows, scores, strict=True):
            out.writerow([r["timestamp"], r["value"], f"{s:.6f}"])
    return len(rows)


def score_tree(data: Path, out: Path, cfg: NabConfig) -> tuple[list[tuple[Path, int]], list[tuple[Path, str]]]:
    """Score every NAB-format CSV under ``data`` into ``out``, mirroring relative paths.

    Returns the files scored (with their rows) and the CSVs skipped (with why); a file with a
    NAB header but a bad value raises, since a partial benchmark would be silently wrong.
    """
    files = sorted(p.relative_to(data) for p in data.rglob("*.csv") if p.is_file())
    scored: list[tuple[Path, int]] = []
    skipped: list[tuple[Path, str]] = []
    for rel in files:
        try:
            scored.append((rel, score_file(data / rel, out / rel, cfg)))
        except NotNabFormat as exc:
            skipped.append((rel, str(exc)))
    if not scored:
        raise ValueError(f"no NAB-format CSV (timestamp,value) under {data}")
    return scored, skipped
