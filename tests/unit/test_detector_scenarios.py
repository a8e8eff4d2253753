"""The scenario benchmark runs the real detector: per kind, surges alert once each and resolve, decoys don't."""

from __future__ import annotations

import numpy as np

from tonewatch.core.sections import DetectorSettings
from tonewatch.evaluation.scenario_feeds import KINDS, MUST_ALERT, MUST_NOT, SEASONAL_DAYS, key_events, plan_keys
from tonewatch.evaluation.scenarios import run_scenarios


def test_every_kind_is_reported_and_injected_surges_alert_once_each_and_resolve() -> None:
    result = run_scenarios(DetectorSettings(top_messages=0), keys=2, hours=4, seed=11)
    summary = result.summary()
    assert set(summary["kinds"]) == set(KINDS)
    assert summary["surges"] == 2 * (len(MUST_ALERT) + 1)  # a pair is two surges
    assert summary["recall"] > 0.5 and summary["resolved_share"] == 1.0
    for kind in MUST_NOT:
        row = summary["kinds"][kind]
        assert row["recall"] is None and row["expect"] == "silence"
    assert summary["kinds"]["seasonal"]["key_days"] == 2.0 * SEASONAL_DAYS  # whole market days each
    for i, surge in enumerate(result.surges):
        for alert in result.matched[i]:
            assert alert.resolved is not None and surge.start <= alert.fired <= surge.end + 180


def test_same_seed_same_figures() -> None:
    a = run_scenarios(DetectorSettings(top_messages=0), keys=1, hours=3, seed=5).summary()
    b = run_scenarios(DetectorSettings(top_messages=0), keys=1, hours=3, seed=5).summary()
    assert a == b


def test_chat_labels_under_count_negatives_and_blips_and_spikes_fit_in_one_minute() -> None:
    rng = np.random.default_rng(3)
    (chat,) = plan_keys(rng, "chat", 0, 360, 60)
    events = key_events(rng, chat, 60)
    assert chat.dimension == "source" and chat.label_recall == 0.5
    observed = sum(e.negative for e in events) / len(events)
    assert observed < 0.7 * float(np.average(chat.p, weights=chat.lam))  # about half the true share
    (blip,) = plan_keys(rng, "blip", 0, 360, 60)
    assert blip.blips and all(3 <= k <= 8 for _, k in blip.blips)
    assert all(s.end - s.start == 60 for s in blip.injected)
    (spike,) = plan_keys(rng, "spike", 0, 360, 60)  # far past six sigma alone, still within one minute
    assert spike.blips and all(10 <= k <= 60 for _, k in spike.blips)
    assert all(s.end - s.start == 60 for s in spike.injected)
