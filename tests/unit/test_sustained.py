"""A surge must outlast one window's length before it fires (#28, item 5): a one-minute spike of any size is a
blip, whatever its z, aligned with a window or straddling two; the same spike lasting three minutes fires."""

from __future__ import annotations

import json

import pytest

from streams.windows import spread
from streams.windows.detector import KeyState, Transition, TrendEvent, apply_event
from streams.windows.fold import decode_partials
from tonewatch.core.sections import DetectorSettings

CFG = DetectorSettings(window_s=60, allowed_lateness_s=120, baseline_min_windows=3, min_volume=5, cooldown_s=600,
                       volume_min_windows=10, top_messages=0)


def calm(m0: int, m1: int, n: int = 10, negatives: int = 2) -> list[TrendEvent]:
    """``n`` messages a minute spread over each minute, ``negatives`` of them negative, evenly spaced."""
    return [TrendEvent("ticker", "TSLA", m * 60 + i * 59 / n, i % (n // negatives) == 0,
                       0.5, f"c{m}-{i}", "", "news") for m in range(m0, m1) for i in range(n)]


def spike(t0: float, seconds: float, negatives: int, tag: str = "s") -> list[TrendEvent]:
    """``negatives`` negative messages evenly over ``seconds`` from ``t0``: one burst of one story."""
    return [TrendEvent("ticker", "TSLA", t0 + i * seconds / negatives, True, 0.95, f"{tag}{i}", "", "news")
            for i in range(negatives)]


def feed(events: list[TrendEvent], cfg: DetectorSettings = CFG) -> list[Transition]:
    state, out = KeyState(), []
    for e in sorted(events, key=lambda e: e.ts):
        u = apply_event(state, e, cfg)
        state, out = u.state, out + u.transitions
    return out


def test_a_one_minute_spike_far_past_six_sigma_raises_nothing_aligned_with_a_window() -> None:
    # 10 messages a minute, 2 negative; then 40 extra negatives inside minute 40 (z far above 6)
    out = feed(calm(0, 60) + spike(40 * 60, 59, 40))
    assert out == []


def test_a_one_minute_spike_straddling_two_windows_raises_nothing() -> None:
    for offset in (15, 30, 45):
        out = feed(calm(0, 60) + spike(40 * 60 + offset, 59, 40, tag=f"o{offset}-"))
        assert out == [], offset


def test_the_same_spike_lasting_three_minutes_fires_on_its_second_window() -> None:
    out = feed(calm(0, 60) + spike(40 * 60, 179, 120))
    assert [t.status for t in out][:1] == ["firing"]
    assert out[0].window.start == 41 * 60
    assert out[0].severity == "critical"


def test_a_surge_starting_mid_window_fires_by_its_third_window() -> None:
    out = feed(calm(0, 60) + spike(40 * 60 + 35, 240, 80))
    assert out and out[0].status == "firing"
    assert 41 * 60 <= out[0].window.start <= 42 * 60


def test_slices_add_up_like_partials_and_old_records_fall_in_their_latest_slice() -> None:
    a, b = spread.single(12.0, 0.0, 60, True), spread.single(59.9, 0.0, 60, False)
    assert spread.merge(a, b) == ((0, 0), (1, 1), (0, 0), (0, 0), (0, 0), (1, 0))
    assert spread.merge((), a) == a and spread.merge(a, ()) == a
    assert spread.whole(7, 3, 45.0, 0.0, 60) == ((0, 0), (0, 0), (0, 0), (0, 0), (7, 3), (0, 0))
    assert spread.slice_of(60.0, 0.0, 60) == spread.SLICES - 1  # float rounding at the edge stays in the window


def test_history_keeps_the_last_windows_with_empty_ones_for_gaps() -> None:
    w = spread.single(0.0, 0.0, 60, True)
    history = spread.push(spread.push((), w, 0), w, 1)  # one window with no messages between them
    assert len(history) == 3 * spread.SLICES
    assert history[spread.SLICES:2 * spread.SLICES] == ((0, 0),) * spread.SLICES
    assert len(spread.push(history, w, 5)) == spread.SUSTAIN_WINDOWS * spread.SLICES


def test_outlasts_needs_excess_beyond_any_window_length_and_clear_of_noise() -> None:
    calm = ((10, 2),) * spread.SLICES
    burst = ((10, 2), (10, 2), (10, 2), (10, 12), (10, 12), (10, 12))  # 30 extra in the window's second half
    two_windows = ((10, 8),) * (2 * spread.SLICES)
    assert not spread.outlasts(calm + burst, 0.2)
    assert not spread.outlasts(burst, 0.2)  # one window: never past its own length
    assert spread.outlasts(two_windows, 0.2)
    assert not spread.outlasts(calm + calm, 0.2)  # nothing in excess at all
    thin = ((10, 8),) * spread.SPAN + ((10, 3),) * (2 * spread.SLICES - spread.SPAN)  # 1 extra a slice after it
    assert not spread.outlasts(thin, 0.2)


@pytest.mark.parametrize("bad", [[[1, 2]] * spread.SLICES, [[1, 0]] * (spread.SLICES - 1), [[True, 0]] * spread.SLICES,
                                 "x"])
def test_malformed_slices_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        spread.from_json(bad)


def test_a_partial_whose_slices_do_not_add_up_is_refused() -> None:
    item = {"dimension": "ticker", "key": "TSLA", "ts": 10.0, "count": 2, "negative": 1, "p_negative_sum": 1.0,
            "slices": [[2, 1]] + [[0, 0]] * (spread.SLICES - 1)}
    assert decode_partials(json.dumps({"partials": [item]}).encode())[0].slices[0] == (2, 1)
    item["slices"] = [[3, 1]] + [[0, 0]] * (spread.SLICES - 1)
    with pytest.raises(ValueError, match="slices"):
        decode_partials(json.dumps({"partials": [item]}).encode())
