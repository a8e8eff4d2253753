"""The scenario benchmark runs the real detector: each detected surge has exactly one alert, resolved."""

from __future__ import annotations

from tonewatch.core.sections import DetectorSettings
from tonewatch.evaluation.scenarios import run_scenarios


def test_injected_surges_alert_once_each_and_resolve() -> None:
    result = run_scenarios(DetectorSettings(top_messages=0), keys=6, hours=4, seed=11)
    summary = result.summary()
    assert summary["surges"] == 3 and summary["recall"] > 0
    assert summary["alerts_per_surge"] == 1.0 and summary["resolved_share"] == 1.0
    for i, surge in enumerate(result.surges):
        for alert in result.matched[i]:
            assert alert.resolved is not None and surge.start <= alert.fired < surge.end


def test_same_seed_same_figures() -> None:
    a = run_scenarios(DetectorSettings(top_messages=0), keys=4, hours=3, seed=5).summary()
    b = run_scenarios(DetectorSettings(top_messages=0), keys=4, hours=3, seed=5).summary()
    assert a == b
