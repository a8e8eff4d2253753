"""The detector's lifecycle at its edges: volume surges, cooldown, robustness, old state, calm keys."""

from __future__ import annotations

import random

import pytest

from streams.windows.alerts import alert_payload
from streams.windows.baseline import Level, binomial_z, count_z, update_level
from streams.windows.detector import KeyState, Transition, TrendEvent, apply_event
from tonewatch.core.sections import DetectorSettings

CFG = DetectorSettings(window_s=60, allowed_lateness_s=120, baseline_min_windows=3, min_volume=5, cooldown_s=600,
                     volume_min_windows=10)


def ev(ts: float, negative: bool, key: str = "TSLA", dim: str = "ticker") -> TrendEvent:
    return TrendEvent(dim, key, ts, negative, 0.9 if negative else 0.1, f"m{ts}", "text", "news")


def minute(m: int, n: int, negatives: int, **kw: str) -> list[TrendEvent]:
    """``n`` messages spread over minute ``m``, negatives spread evenly among them."""
    neg = {round(i * n / negatives) for i in range(negatives)} if negatives else set()
    return [ev(m * 60 + i * 59 / n, i in neg, **kw) for i in range(n)]


def feed(events: list[TrendEvent], cfg: DetectorSettings = CFG, state: KeyState | None = None
         ) -> tuple[KeyState, list[Transition]]:
    state = state or KeyState()
    out: list[Transition] = []
    for e in events:
        u = apply_event(state, e, cfg)
        assert u.accepted
        state, out = u.state, out + u.transitions
    return state, out


def calm(m0: int, m1: int, n: int = 20, negatives: int = 4) -> list[TrendEvent]:
    return [e for m in range(m0, m1) for e in minute(m, n, negatives)]


def test_volume_burst_at_the_usual_share_is_no_negative_surge() -> None:
    # 5x the messages, 5x the negatives, the same 20 %: the mix did not change (#28)
    _, out = feed(calm(0, 30) + [e for m in range(30, 35) for e in minute(m, 100, 20)] + calm(35, 45))
    assert out == []


def test_negatives_outrunning_the_volume_fire_with_reason_volume_and_resolve() -> None:
    # 42 negatives in 100 messages: twice what the baseline share of this volume predicts, but less than
    # min_delta above it, so only the volume test can see it; a window or two of evidence, then it fires
    events = calm(0, 30) + [e for m in range(30, 35) for e in minute(m, 100, 42)] + calm(35, 45)
    _, out = feed(events)
    assert [(t.status, t.reason) for t in out] == [("firing", "volume"), ("resolved", "volume")]
    assert out[0].window.start == 31 * 60 and out[1].window.start == 35 * 60


def test_share_and_volume_surge_fires_once_judged_on_its_complete_window() -> None:
    _, out = feed(calm(0, 30) + [e for m in range(30, 33) for e in minute(m, 60, 50)] + calm(33, 40))
    assert [t.status for t in out] == ["firing", "resolved"]
    assert out[0].reason == "both" and out[0].window.count == 60  # decided once the whole window is in


def test_calm_busy_key_stays_silent_over_half_a_day() -> None:
    rng = random.Random(3)
    events: list[TrendEvent] = []
    for m in range(720):  # noisy volume with a slow cycle, binomial negatives at 20 %
        n = max(0, round(rng.gauss(80 + 40 * (m / 360 - 1) ** 2, 9)))
        events += [ev(m * 60 + i * 59 / max(n, 1), rng.random() < 0.2) for i in range(n)]
    state, out = feed(events, DetectorSettings(top_messages=0))
    assert out == []
    assert state.volume is not None and state.volume.mean == pytest.approx(0.2 * 120, rel=0.3)


def test_cooldown_blocks_a_refire_then_lets_a_later_surge_fire() -> None:
    surge = [e for m in range(20, 22) for e in minute(m, 20, 20)]  # sharp: fires on its second window
    again = [e for m in range(26, 28) for e in minute(m, 20, 20)]  # 4 minutes after the resolve: cooling down
    late = [e for m in range(40, 42) for e in minute(m, 20, 20)]  # long after
    _, out = feed(calm(0, 20) + surge + calm(22, 26) + again + calm(28, 40) + late + calm(42, 50))
    assert [(t.status, t.window.start) for t in out] == [
        ("firing", 1260), ("resolved", 1320), ("firing", 2460), ("resolved", 2520)]
    _, no_cooldown = feed(calm(0, 20) + surge + calm(22, 26) + again + calm(28, 32),
                          DetectorSettings(baseline_min_windows=3, cooldown_s=0))
    assert [t.status for t in no_cooldown] == ["firing", "resolved", "firing", "resolved"]


def test_per_dimension_minimum_volume_silences_small_windows_of_that_dimension_only() -> None:
    cfg = DetectorSettings(min_volume_by_dimension={"source": 50})
    for dim, fires in (("source", False), ("ticker", True)):
        events = [e for m in range(10) for e in minute(m, 10, 2, dim=dim)]
        events += minute(10, 20, 20, dim=dim) + minute(11, 20, 20, dim=dim)
        events += minute(14, 10, 2, dim=dim)  # the watermark passes the surging windows by the lateness
        _, out = feed(events, cfg)
        assert bool(out) is fires, dim


def test_one_outlier_window_moves_the_baselines_by_a_bounded_step() -> None:
    cfg = DetectorSettings(baseline_min_windows=1000)  # never fires: every window is folded in
    before, _ = feed(calm(0, 30), cfg)
    after, _ = feed(calm(0, 30) + minute(30, 400, 400) + calm(31, 35), cfg)
    calm_only, _ = feed(calm(0, 35), cfg)
    assert before.baseline is not None and after.baseline is not None and calm_only.baseline is not None
    assert after.baseline - calm_only.baseline < 0.05  # one window of 100 % negative moved it < 5 points
    assert after.volume is not None and calm_only.volume is not None
    assert after.volume.mean < 2 * calm_only.volume.mean  # 400 negatives vs a normal 4: clipped


def test_level_learns_a_lasting_shift() -> None:
    level: Level | None = None
    for x in [10.0] * 50 + [40.0] * 200:
        level = update_level(level, x, alpha=0.2, clip=3.0)
    assert level is not None and level.mean == pytest.approx(40, abs=1)


def test_state_dicts_written_before_volume_and_cooldown_still_load() -> None:
    old = {
        "windows": [{"start": 600.0, "count": 3, "negative": 1, "p_negative_sum": 1.2,
                     "drivers": [{"message_id": "a", "text": "t", "source": "news", "p_negative": 0.9}]}],
        "watermark": 630.0, "closed_until": 600.0, "baseline": 0.2, "closed_windows": 10,
        "firing": {"alert_id": "abc", "started": 540.0, "severity": "warning", "peak_score": 4.2},
    }
    state = KeyState.from_dict(old)
    assert state.volume is None and state.cooldown_until is None
    assert state.firing is not None and state.firing.reason == "share"
    u = apply_event(state, ev(640, False), CFG)
    assert u.accepted
    new, _ = feed(calm(0, 30) + minute(30, 20, 20) + minute(31, 20, 20) + calm(34, 35))
    assert new.volume is not None and new.firing is not None
    assert KeyState.from_dict(new.to_dict()) == new


def test_alert_payload_says_which_baseline_broke() -> None:
    _, out = feed(calm(0, 30) + [e for m in range(30, 35) for e in minute(m, 100, 42)])
    payload = alert_payload(out[0], "ticker", "TSLA", 60, 120)
    assert payload["reason"] == "volume" and payload["volume"] >= 5
    assert payload["at"] == "1970-01-01T00:34:00Z"  # decided at the window's end plus the lateness


def test_small_binomial_windows_use_the_exact_tail() -> None:
    assert binomial_z(3 / 5, 5, 0.05) == pytest.approx(3.05, abs=0.02)  # P(X >= 3) = 0.00116
    assert binomial_z(0.5, 2000, 0.2) > 30  # large windows: normal approximation


def test_count_z_never_exceeds_poisson_noise() -> None:
    assert count_z(5, Level(mean=1.0, dev=0.0, n=20)) < 3  # P(X >= 5 | 1) = 0.0037
    assert count_z(5, Level(mean=1.0, dev=0.0, n=20)) < (5 - 1) / 1.0
