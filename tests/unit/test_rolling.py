"""The rolling view: counts of the closed windows inside the span, through the detector and the changelog."""

from __future__ import annotations

import json

from streams.windows.detector import KeyState, TrendEvent, apply_event
from streams.windows.rolling import push, view
from streams.windows.trends import trend_record
from tonewatch.core.sections import DetectorSettings


def test_push_keeps_only_windows_inside_the_span_ending_with_the_new_one() -> None:
    recent = ()
    for start, count, neg in [(0, 10, 1), (60, 5, 5), (120, 4, 0), (300, 2, 2)]:
        recent = push(recent, start, count, neg, window_s=60, span_s=180)
    # the span ending at 360 starts at 180: the windows at 0, 60 and 120 fell out, the gap counts as empty
    assert recent == ((300, 2, 2),)
    assert view(recent, 180).share == 1.0
    assert view((), 180).share == 0.0 and view((), 180).count == 0


def _event(ts: float, negative: bool) -> TrendEvent:
    return TrendEvent(dimension="ticker", key="TSLA", ts=ts, negative=negative, p_negative=0.9 if negative else 0.1,
                      message_id=f"m{ts}", text="t", source="news")


def test_every_closed_window_carries_the_rolling_counts_and_they_survive_the_changelog() -> None:
    cfg = DetectorSettings(window_s=60, allowed_lateness_s=0, rolling_s=180)
    state = KeyState()
    records = []
    # one message a minute for 6 minutes, negative in minutes 3 and 4, then one that closes minute 5
    for minute in range(7):
        update = apply_event(state, _event(minute * 60 + 1, minute in (3, 4)), cfg)
        state = KeyState.from_dict(json.loads(json.dumps(update.state.to_dict())))  # as the table stores it
        records += [trend_record("ticker", "TSLA", c, cfg.window_s) for c in update.closed]
    rolled = [(r["window_start"], r["rolling"]["count"], r["rolling"]["negative"]) for r in records]
    assert rolled == [(0, 1, 0), (60, 2, 0), (120, 3, 0), (180, 3, 1), (240, 3, 2), (300, 3, 2)]
    assert records[-1]["rolling"] == {"seconds": 180, "count": 3, "negative": 2, "negative_share": 0.666667}


def test_a_state_written_before_the_rolling_view_still_loads() -> None:
    old = KeyState().to_dict()
    del old["recent"]
    assert KeyState.from_dict(old).recent == ()
