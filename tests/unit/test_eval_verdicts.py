"""Precision on analysts' verdicts: the arithmetic, without a database."""

from __future__ import annotations

from tonewatch.evaluation.verdicts import lines, precision


def test_precision_counts_true_over_judged_overall_and_per_severity() -> None:
    table = precision([("true_alarm", "critical", 3), ("false_alarm", "critical", 1), ("false_alarm", "warning", 2)])
    assert table["all"] == {"true_alarm": 3, "false_alarm": 3, "judged": 6, "precision": 0.5}
    assert table["critical"]["precision"] == 0.75 and table["warning"]["precision"] == 0.0


def test_nothing_judged_has_no_precision_rather_than_a_perfect_one() -> None:
    table = precision([])
    assert table == {"all": {"true_alarm": 0, "false_alarm": 0, "judged": 0, "precision": None}}
    assert lines(table)[1].split() == ["all", "0", "0", "0", "-"]
