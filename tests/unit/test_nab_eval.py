"""NAB scoring of count series: bounded, causal, one high score per surge, the market clock, mirrored files."""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tonewatch.evaluation.nab import NabConfig, score_tree, surge_scores

CFG = NabConfig()
STEP, DAY = 300.0, 86400.0
MONDAY = 1425254400.0  # 2015-03-02 00:00 UTC


def calm_counts(n: int, mean: float = 40.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [float(max(0, round(rng.gauss(mean, mean**0.5)))) for _ in range(n)]


def test_a_spike_scores_high_once_then_the_lifecycle_keeps_it_quiet() -> None:
    values = calm_counts(300) + [200.0] * 5 + calm_counts(100, seed=2)
    scores = surge_scores(values, CFG)
    assert all(0.0 <= s <= 1.0 for s in scores)
    high = [i for i, s in enumerate(scores) if s >= 0.5]
    assert high == [300]  # the onset only: the rest of the surge and the cooldown score 0
    assert scores[301:305] == [0.0] * 4


def test_calm_series_stays_below_the_firing_score() -> None:
    assert max(surge_scores(calm_counts(3000), CFG)[50:]) < 0.5


def test_scores_are_causal() -> None:
    values = [*calm_counts(200), 150.0, *calm_counts(50, seed=3)]
    full = surge_scores(values, CFG)
    assert surge_scores(values[:201], CFG) == full[:201]


def market_series(days: int, mean: float, seed: int = 1) -> tuple[list[float], list[float]]:
    """Five-minute Poisson counts on a market clock: 8x in the opening hour (14 UTC), 0.5x overnight."""
    rng = np.random.default_rng(seed)
    times = [MONDAY + i * STEP for i in range(int(days * DAY / STEP))]
    clock = [8.0 if int(t // 3600) % 24 == 14 else 1.0 if 14 < int(t // 3600) % 24 < 21 else 0.5 for t in times]
    return times, [float(v) for v in rng.poisson(mean * np.array(clock))]


def firings(scores: list[float], after: int = 0) -> list[int]:
    return [i for i, s in enumerate(scores) if s >= 0.5 and i >= after]


def test_the_daily_open_is_not_a_surge_once_the_clock_is_learnt() -> None:
    times, values = market_series(days=10, mean=10)
    plain = NabConfig(novelty_days=0, quiet_s=0)  # the clock alone: no novelty bar, no quiet day
    later = int(3 * DAY / STEP)
    assert firings(surge_scores(values, plain, times), later) == []
    assert len(firings(surge_scores(values, NabConfig(novelty_days=0, quiet_s=0, clock_buckets=0), times), later)) >= 3


def test_a_quiet_keys_sustained_surge_fires_on_the_hours_count() -> None:
    values = [float(i % 2) for i in range(864)] + [2.0] * 36  # 0.5 a point, then 4x for three hours
    flat = NabConfig(clock_buckets=0)  # the hour's count alone (a young clock would learn the surge's hour too)
    assert firings(surge_scores(values, flat), 864)  # no single point is surprising: the hour is
    assert firings(surge_scores(values, replace(flat, sustained_s=0))) == []


def test_a_bursty_keys_everyday_bursts_stop_paging_and_a_larger_one_does() -> None:
    values = calm_counts(288 * 12, mean=20, seed=4)
    for day in range(12):  # a 5x burst at a different time every day
        values[day * 288 + 37 * day % 288] = 100.0
    values[11 * 288 + 200] = 1000.0
    later = firings(surge_scores(values, CFG), 288 * 4)
    assert later == [11 * 288 + 200]
    assert len(firings(surge_scores(values, NabConfig(novelty_days=0)), 288 * 4)) >= 5


def test_after_an_alert_the_key_stays_quiet_for_a_day() -> None:
    values = calm_counts(288 * 4, mean=20, seed=5)
    values[600], values[700], values[900] = 200.0, 2000.0, 5000.0  # 700: within the day, 900: after it
    fired = firings(surge_scores(values, CFG))
    assert fired[0] == 600 and [i for i in fired if 600 < i < 888] == [] and 900 <= fired[1] <= 902
    assert 700 in firings(surge_scores(values, NabConfig(quiet_s=0)))  # without the quiet day it pages again


def write(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_score_tree_mirrors_paths_and_reports_non_nab_csvs(tmp_path: Path) -> None:
    series = [["timestamp", "value"]] + [[f"2015-03-01 00:{i:02d}:00", str(v)] for i, v in enumerate([3, 4, 5, 4])]
    write(tmp_path / "data" / "realTweets" / "a.csv", series)
    write(tmp_path / "data" / "other" / "deep" / "b.csv", series)
    write(tmp_path / "data" / "notes.csv", [["x", "y"], ["1", "2"]])
    scored, skipped = score_tree(tmp_path / "data", tmp_path / "out", CFG)
    assert sorted(str(p) for p, _ in scored) == ["other/deep/b.csv", "realTweets/a.csv"]
    assert [(str(p), why) for p, why in skipped] == [("notes.csv", "missing column(s) timestamp, value")]
    with (tmp_path / "out" / "realTweets" / "a.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score"] and len(rows) == 4
    assert rows[2]["timestamp"] == "2015-03-01 00:02:00" and 0 <= float(rows[2]["anomaly_score"]) <= 1


def test_bad_value_fails_loudly(tmp_path: Path) -> None:
    write(tmp_path / "data" / "a.csv", [["timestamp", "value"], ["2015-03-01 00:00:00", "n/a"]])
    with pytest.raises(ValueError, match="non-numeric"):
        score_tree(tmp_path / "data", tmp_path / "out", CFG)


def test_bad_timestamp_fails_loudly(tmp_path: Path) -> None:
    write(tmp_path / "data" / "a.csv", [["timestamp", "value"], ["yesterday", "3"]])
    with pytest.raises(ValueError, match="bad timestamp"):
        score_tree(tmp_path / "data", tmp_path / "out", CFG)


def test_score_tree_writes_nabs_results_layout_under_a_prefix(tmp_path: Path) -> None:
    series = [["timestamp", "value"]] + [[f"2015-03-01 00:{i:02d}:00", "3"] for i in range(3)]
    write(tmp_path / "data" / "realTweets" / "Twitter_volume_KO.csv", series)
    score_tree(tmp_path / "data", tmp_path / "tonewatch", CFG, prefix="tonewatch_")
    assert (tmp_path / "tonewatch" / "realTweets" / "tonewatch_Twitter_volume_KO.csv").is_file()
