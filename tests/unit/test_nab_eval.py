"""NAB scoring of count series: bounded, causal, one high score per surge, mirrored file layout."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from tonewatch.evaluation.nab import NabConfig, score_tree, surge_scores

CFG = NabConfig()


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
