"""The cases a desk judges alerts by (#28): what must stay silent and what must fire, at the detector."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from streams.windows.baseline import Level
from streams.windows.changepoint import dispersion, expected_negatives, negatives_z
from streams.windows.detector import KeyState, Transition, TrendEvent, apply_event
from streams.windows.prevalence import Rates, adjusted
from tonewatch.core.sections import DetectorSettings

CFG = DetectorSettings(window_s=60, allowed_lateness_s=120, baseline_min_windows=3, min_volume=5, cooldown_s=600,
                       volume_min_windows=10, top_messages=0)


def minute(m: int, n: int, negatives: int, dim: str = "ticker", key: str = "TSLA", offset: float = 0.0
           ) -> list[TrendEvent]:
    """``n`` messages spread over 59 s from minute ``m`` (plus ``offset`` s), negatives spread among them."""
    neg = {round(i * n / negatives) for i in range(negatives)} if negatives else set()
    return [TrendEvent(dim, key, m * 60 + offset + i * 59 / n, i in neg, 0.9, f"{key}-{m}-{offset}-{i}", "", "news")
            for i in range(n)]


def feed(events: list[TrendEvent], cfg: DetectorSettings = CFG) -> tuple[KeyState, list[Transition]]:
    state, out = KeyState(), []
    for e in sorted(events, key=lambda e: e.ts):
        u = apply_event(state, e, cfg)
        assert u.accepted
        state, out = u.state, out + u.transitions
    return state, out


def span(m0: int, m1: int, n: int, negatives: int, **kw: str) -> list[TrendEvent]:
    return [e for m in range(m0, m1) for e in minute(m, n, negatives, **kw)]


def test_positive_flood_and_its_end_raise_nothing() -> None:
    # 30 a minute at 11 negatives; then 5x the messages with the same 11 negatives; then back to normal.
    # Learning the flood's low share at full rate made the usual mix look like a surge when it ended.
    events = span(0, 30, 30, 11) + span(30, 40, 150, 11) + span(40, 70, 30, 11)
    _, out = feed(events)
    assert out == []


def test_one_minute_blip_raises_nothing_aligned_or_straddling_two_windows() -> None:
    # a key of 6 messages a minute, one negative; 8 extra negatives within one minute: one author's burst
    calm = span(0, 30, 6, 1) + span(31, 40, 6, 1)
    aligned = [TrendEvent("ticker", "TSLA", 30 * 60 + i * 7, True, 0.9, f"b{i}", "", "news") for i in range(8)]
    _, out = feed(calm + minute(30, 6, 1) + aligned)
    assert out == []
    straddling = [TrendEvent("ticker", "TSLA", 30 * 60 + 30 + i * 7, True, 0.9, f"b{i}", "", "news") for i in range(8)]
    _, out = feed(calm + minute(30, 6, 1) + straddling)
    assert out == []


def test_market_open_triples_volume_at_the_usual_share_and_raises_nothing() -> None:
    # overnight 4 a minute with one negative, then the open at 40 a minute with 10: 10x the negatives,
    # the same quarter of the messages
    _, out = feed(span(0, 60, 4, 1) + span(60, 90, 40, 10) + span(90, 120, 12, 3))
    assert out == []


def test_quiet_ticker_surge_of_a_handful_of_negatives_fires_within_three_windows() -> None:
    # about one message a minute (every 4th negative), then 7 extra negatives a minute for 5 minutes
    calm = [e for m in range(60) for e in minute(m, 1, 1 if m % 4 == 0 else 0)]
    surge = span(60, 65, 8, 7)
    _, out = feed(calm + surge + [e for m in range(65, 75) for e in minute(m, 1, 0)])
    assert [t.status for t in out] == ["firing", "resolved"]
    assert 60 * 60 <= out[0].window.start <= 62 * 60  # z about 3.6 a window: evidence adds up


def test_chat_surge_under_counted_by_its_model_fires() -> None:
    # chat's model labels half the true negatives: a surge from 20 % to 65 % true negatives at 1.5x volume
    # reads as 10 % to 31 %, less than min_delta above the baseline: the volume test must carry it
    events = span(0, 40, 30, 3, dim="source", key="chat") + span(40, 50, 45, 14, dim="source", key="chat")
    _, out = feed(events + span(50, 60, 30, 3, dim="source", key="chat"))
    assert [t.status for t in out] == ["firing", "resolved"]
    assert out[0].reason == "volume" and 40 * 60 <= out[0].window.start <= 43 * 60


def test_two_tickers_surging_together_each_fire() -> None:
    events = []
    for key in ("TSLA", "NVDA"):
        events += span(0, 30, 20, 4, key=key) + span(30, 35, 20, 13, key=key) + span(35, 45, 20, 4, key=key)
    states: dict[str, KeyState] = {}
    fired = []
    for e in sorted(events, key=lambda e: e.ts):
        u = apply_event(states.get(e.key, KeyState()), e, CFG)
        states[e.key] = u.state
        fired += [(e.key, t.window.start) for t in u.transitions if t.status == "firing"]
    assert sorted(fired) == [("NVDA", 1860), ("TSLA", 1860)]  # 13 of 20 against 20 %: z 4.4, two windows


def test_slow_shift_on_a_key_too_quiet_for_one_window_fires() -> None:
    # 3 messages a minute at 10 % negative; then 2 of 3 negative for 10 minutes: no window has the minimum
    # volume, but ten of them together are no chance
    calm = [e for m in range(60) for e in minute(m, 3, 1 if m % 3 == 0 else 0)]
    _, out = feed(calm + span(60, 70, 3, 2) + [e for m in range(70, 80) for e in minute(m, 3, 0)])
    assert [t.status for t in out] == ["firing", "resolved"] and out[0].reason == "share"


def test_state_written_before_the_change_point_evidence_loads_as_calm() -> None:
    state, _ = feed(span(0, 30, 20, 4) + span(30, 31, 20, 12) + minute(33, 20, 4))  # evidence, no alert yet
    assert state.evidence > 0 and state.firing is None
    old = state.to_dict()
    for field in ("evidence", "shift", "shift_negatives"):
        del old[field]
    loaded = KeyState.from_dict(old)
    assert (loaded.evidence, loaded.shift, loaded.shift_negatives) == (0.0, 0.0, 0)
    assert KeyState.from_dict(state.to_dict()) == state


def test_negative_binomial_tail_is_poisson_without_dispersion_and_wider_with_it() -> None:
    assert negatives_z(9, 2.3, 0.0) == pytest.approx(-stats.norm.ppf(stats.poisson.sf(8, 2.3)), abs=1e-6)
    r, mean = 2.0, 4.0  # phi 0.5: variance 4 + 8
    nb = stats.nbinom.sf(14, r, r / (r + mean))
    assert negatives_z(15, mean, 0.5) == pytest.approx(-stats.norm.ppf(nb), abs=1e-6)
    assert negatives_z(15, mean, 0.5) < negatives_z(15, mean, 0.0)
    assert negatives_z(10**9, 1.0, 0.3) == pytest.approx(37.0)  # constant time, capped
    assert negatives_z(5, math.nan, 0.0) == 0.0 and negatives_z(5, 2.0, math.inf) == 0.0


def test_dispersion_and_expectation_from_the_key_baselines() -> None:
    assert dispersion(Level(mean=20.0, dev=3.57, n=50)) == pytest.approx(0.0, abs=0.01)  # Poisson spread
    assert dispersion(Level(mean=10.0, dev=8.0, n=50)) == pytest.approx(((1.2533 * 8) ** 2 - 10) / 100, rel=1e-3)
    assert dispersion(Level(mean=0.0, dev=1.0, n=5)) == 0.0
    usual = Level(mean=4.0, dev=1.0, n=50)
    assert expected_negatives(usual, 0.2, 100) == 20.0  # a burst: its own volume at the usual share
    assert expected_negatives(usual, 0.2, 5) == 4.0  # a lull: the usual count


def test_severity_follows_the_whole_surge_not_the_window_that_confirmed_it() -> None:
    # 14 of 20 against 20 %: z 4.6 a window, so the second window fires; two such windows together are as
    # unlikely as one at z 6.5 (Stouffer), a critical surge, although neither window alone reached 6
    _, out = feed(span(0, 30, 20, 4) + span(30, 35, 20, 14) + span(35, 45, 20, 4))
    assert [t.status for t in out] == ["firing", "resolved"]
    assert out[0].window.start == 31 * 60 and out[0].severity == "critical" and out[0].score > 6


def test_a_young_key_learns_its_share_from_its_own_windows_not_the_prior() -> None:
    # a key that never had a negative in 20 windows: its baseline must be near 0, not still near the
    # prior (0.2 decayed by 0.97 a window is 0.11), or its first surge is judged against a share it never had
    state, out = feed(span(0, 21, 10, 0))
    assert out == [] and state.baseline is not None and state.baseline < 0.03


CHAT = Rates(tpr=0.4, fpr=0.08)  # chat's model: half the true negatives labelled, p 0.4 on them on average


def chat_minute(m: int, n: int, true_negatives: int, rates: Rates | None) -> list[TrendEvent]:
    """True negatives alternate between labelled (p 0.7) and missed (p 0.1); the rest have p 0.08."""
    out = []
    for i in range(n):
        p = (0.7 if i % 2 == 0 else 0.1) if i < true_negatives else 0.08
        out.append(TrendEvent("source", "chat", m * 60 + i * 59 / n, p > 0.5, p, f"c{m}-{i}", "", "chat",
                              adjusted=None if rates is None else adjusted(p, p > 0.5, rates)))
    return out


def test_a_surge_the_model_under_counts_is_measured_at_its_true_size() -> None:
    # true negatives 30 % -> 55 % of 100 chat messages a minute: counted, 15 % -> 27.5 %, under min_delta
    # above the baseline, and the negatives below twice their usual count, so only the slow-shift test sees
    # it, six windows in; corrected, it is 0.25 above its baseline and the share test's z (3.3 a window) adds up
    def chat_feed(rates: Rates | None) -> list[Transition]:
        events = [e for m in range(40) for e in chat_minute(m, 100, 30 if m < 30 else 55, rates)]
        return feed(events + [e for m in range(40, 50) for e in chat_minute(m, 100, 30, rates)])[1]

    out = chat_feed(CHAT)
    assert out[0].window.start <= 33 * 60 < chat_feed(None)[0].window.start
    assert [t.status for t in out] == ["firing", "resolved"] and out[0].reason == "share"
    assert abs(out[0].window.corrected_share - 0.55) < 0.02


def market_day(day: int, surge_at: int | None = None) -> list[TrendEvent]:
    """A ticker busy while the market is open (13:30-20:00 UTC: 20 a minute, a fifth negative) and quiet
    otherwise (3 a minute, one negative in three windows); with ``surge_at``, 6 of 8 negative for 6 minutes."""
    out = []
    for m in range(24 * 60):
        minute = day * 1440 + m
        if surge_at is not None and surge_at <= m < surge_at + 6:
            out += minute_of(minute, 8, 6)
        elif 13 * 60 + 30 <= m < 20 * 60:
            out += minute_of(minute, 20, 4)
        else:
            out += minute_of(minute, 3, 1 if m % 3 == 0 else 0)
    return out


def minute_of(m: int, n: int, negatives: int) -> list[TrendEvent]:
    return minute(m, n, negatives, key="NVDA")


def test_a_surge_just_after_the_close_fires_although_the_negatives_level_remembers_the_session() -> None:
    # 3 days of the market's clock, then 6 of 8 negative at 20:05: the negatives level still holds the
    # session's 4 a window, so the volume test sees nothing; the share test must (a market clock on the
    # level, tried for #28, changed nothing here or in any scenario: benchmarks/detector.md)
    events = [e for d in range(3) for e in market_day(d)] + market_day(3, surge_at=20 * 60 + 5)
    start = (3 * 1440 + 20 * 60 + 5) * 60
    fired = [t for t in feed(events)[1] if t.status == "firing"]  # and no open or close ever fired
    assert len(fired) == 1 and fired[0].window.start <= start + 3 * 60 and fired[0].reason == "share"
