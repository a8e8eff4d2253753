"""Window and detector math at its edges, with explicit timestamps and no broker."""

from __future__ import annotations

import pytest

from streams.windows.detector import (
    KeyState,
    Transition,
    TrendEvent,
    apply_event,
    surge_score,
    window_start,
)
from tonewatch.core.sections import DetectorSettings

CFG = DetectorSettings(window_s=60, allowed_lateness_s=120, baseline_min_windows=3, min_volume=5, min_delta=0.25, z=3.0)


def ev(ts: float, negative: bool, key: str = "TSLA", i: int = 0) -> TrendEvent:
    return TrendEvent("ticker", key, ts, negative, 0.9 if negative else 0.1, f"m{ts}-{i}", "text", "news")


def feed(state: KeyState, events: list[TrendEvent]) -> tuple[KeyState, list[Transition]]:
    out: list[Transition] = []
    for e in events:
        u = apply_event(state, e, CFG)
        assert u.accepted
        state = u.state
        out.extend(u.transitions)
    return state, out


def calm_minute(minute: int, n: int = 6, negatives: int = 1) -> list[TrendEvent]:
    return [ev(minute * 60 + i, i < negatives, i=i) for i in range(n)]


def surge_minute(minute: int, n: int = 10) -> list[TrendEvent]:
    """Spread over the minute: a run of such minutes is a surge, not a burst at each minute's start."""
    return [ev(minute * 60 + i * 59 / n, True, i=i) for i in range(n)]


def test_window_start_is_floor_of_event_time() -> None:
    assert window_start(59.999, 60) == 0
    assert window_start(60.0, 60) == 60
    assert window_start(-1, 60) == -60


def test_calm_key_never_fires() -> None:
    state, out = feed(KeyState(), [e for m in range(30) for e in calm_minute(m)])
    assert out == []
    assert state.closed_windows == 27  # the last three are still open: within the 120 s lateness
    assert [w.start for w in state.windows] == [1620, 1680, 1740]
    assert state.baseline == pytest.approx(1 / 6, abs=0.03)


def test_surge_fires_once_then_resolves() -> None:
    events = [e for m in range(10) for e in calm_minute(m)]
    events += [e for m in range(10, 13) for e in surge_minute(m)]  # three surging windows
    events += [e for m in range(13, 18) for e in calm_minute(m)]
    _, out = feed(KeyState(), events)
    assert [t.status for t in out] == ["firing", "resolved"]
    assert out[1].window.start == 780  # the first calm window, once the watermark passed it by the lateness
    assert out[0].alert_id == out[1].alert_id
    assert out[0].window.start == 660  # its second window: a surge must outlast one window's length
    assert out[0].window.count == 10  # judged once the whole window is in, not on its first messages


def test_no_alert_before_baseline_history() -> None:
    _, out = feed(KeyState(), surge_minute(0) + surge_minute(1))
    assert out == []


def test_small_windows_do_not_fire() -> None:
    events = [e for m in range(10) for e in calm_minute(m)] + surge_minute(10, n=CFG.min_volume - 1)
    _, out = feed(KeyState(), events)
    assert out == []


def test_baseline_frozen_while_firing() -> None:
    calm = [e for m in range(10) for e in calm_minute(m)]
    fired, out = feed(KeyState(), calm + [e for m in range(10, 15) for e in surge_minute(m)])
    assert [t.status for t in out] == ["firing"]
    later, out = feed(fired, [e for m in range(15, 25) for e in surge_minute(m)])
    assert out == [] and later.closed_windows == fired.closed_windows + 10
    assert later.baseline == fired.baseline and later.volume == fired.volume  # the surge is not the new normal


def test_late_event_within_lateness_lands_in_its_own_window() -> None:
    state, _ = feed(KeyState(), calm_minute(0) + calm_minute(1))
    u = apply_event(state, ev(5, True, i=99), CFG)  # 60 s behind the watermark: allowed
    state = u.state
    assert u.accepted and [(w.start, w.count, w.negative) for w in state.windows] == [(0, 7, 2), (60, 6, 1)]


def test_results_do_not_depend_on_arrival_order_within_lateness() -> None:
    import random

    events = [e for m in range(10) for e in calm_minute(m)] + [e for m in range(10, 13) for e in surge_minute(m)]
    events += [e for m in range(13, 20) for e in calm_minute(m)]
    shuffled = events[:]
    rng = random.Random(1)
    for i in range(0, len(shuffled), 8):  # disorder of up to ~80 s, like interleaved partitions
        chunk = shuffled[i : i + 8]
        rng.shuffle(chunk)
        shuffled[i : i + 8] = chunk
    a, out_a = feed(KeyState(), events)
    b, out_b = feed(KeyState(), shuffled)
    assert [(t.status, t.alert_id) for t in out_a] == [(t.status, t.alert_id) for t in out_b]
    assert a.baseline == pytest.approx(b.baseline) and a.closed_windows == b.closed_windows


def test_too_late_event_is_refused() -> None:
    state, _ = feed(KeyState(), calm_minute(0) + calm_minute(5))
    assert state.closed_until == 60
    u = apply_event(state, ev(30, True), CFG)
    assert not u.accepted and u.state == state and u.transitions == [] and u.closed == []


def test_state_round_trips_through_json_dict() -> None:
    from streams.windows.fold import dump_state, load_state

    events = [e for m in range(10) for e in calm_minute(m)] + surge_minute(10) + surge_minute(11) + calm_minute(14)
    state, _ = feed(KeyState(), events)
    assert state.firing is not None and state.recent_slices and state.windows[0].slices
    assert KeyState.from_dict(state.to_dict()) == state
    assert load_state(dump_state(state)) == state  # the changelog's JSON: slices come back as tuples


def test_surge_score_is_zero_for_empty_window() -> None:
    from streams.windows.detector import Window

    assert surge_score(Window(start=0), 0.2) == 0.0
    assert surge_score(Window(start=0, count=10, negative=10), 0.2) > 5  # exact tail 0.2 ** 10: z 5.2


def test_each_window_closes_once_with_its_counts_and_the_baseline_after_it() -> None:
    events = [e for m in range(6) for e in calm_minute(m)] + [ev(9 * 60, False)]
    state = KeyState()
    closed = []
    for e in events:
        u = apply_event(state, e, CFG)
        state = u.state
        closed.extend(u.closed)
    assert [(c.window.start, c.window.count, c.window.negative) for c in closed] == [
        (m * 60, 6, 1) for m in range(6)
    ]
    assert closed[-1].baseline == state.baseline and not any(c.alerting for c in closed)
