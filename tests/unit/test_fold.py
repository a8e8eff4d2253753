"""Per-key batching must not change what the detector sees: same states, same alerts, same late events."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from streams.fold import decode_events, dump_state, encode_events, fold_events, group_by_key, load_state
from streams.windows import DetectorConfig, KeyState, TrendEvent, apply_event

CFG = DetectorConfig(window_s=10, allowed_lateness_s=5, rolling_s=30, min_volume=3, cooldown_s=20)


def _events(seed: int, n: int = 400) -> list[TrendEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = i * 0.5 + rng.uniform(-12, 2)  # some late beyond the lateness, most in order
        surge = 150 < i < 200
        out.append(TrendEvent("ticker", rng.choice(["TSLA", "AAPL"]), ts, rng.random() < (0.9 if surge else 0.1),
                              rng.random(), f"m{i}", f"text {i}", "news", {"sentiment": "1"}))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_folding_a_batch_equals_applying_events_one_by_one(seed: int) -> None:
    events = _events(seed)
    expected: dict[str, KeyState] = {}
    expected_updates = []
    for ev in events:
        key = f"{ev.dimension}|{ev.key}"
        update = apply_event(expected.get(key, KeyState()), ev, CFG)
        expected_updates.append((ev, update))
        if update.accepted:
            expected[key] = update.state
    got: dict[str, KeyState] = {}
    got_updates = []
    for start in range(0, len(events), 37):  # batches cut anywhere, state carried through the table codec
        for key, group in group_by_key(events[start:start + 37]).items():
            fold = fold_events(load_state(got.get(key) and dump_state(got[key])), group, CFG)
            got[key] = fold.state
            got_updates.extend(zip(group, fold.updates, strict=True))
    assert got == expected
    order = {ev.message_id: i for i, ev in enumerate(events)}
    assert sorted(got_updates, key=lambda u: order[u[0].message_id]) == expected_updates
    assert any(not u.accepted for _, u in expected_updates), "the data must exercise late events"
    assert any(u.transitions for _, u in expected_updates), "and alert transitions"


def test_group_by_key_keeps_arrival_order_per_key() -> None:
    events = _events(4, 50)
    for key, group in group_by_key(events).items():
        assert [e.message_id for e in group] == [e.message_id for e in events if f"ticker|{e.key}" == key]


def test_batch_records_round_trip_and_single_event_records_still_read() -> None:
    events = _events(5, 3)
    assert decode_events(encode_events(events)) == events
    old = json.dumps(events[0].__dict__).encode()  # what a worker before batching wrote
    assert decode_events(old) == [events[0]]


@pytest.mark.parametrize("raw", [b"[]", b'{"events": []}', b'{"events": [{"dimension": "x"}]}', b"nope"])
def test_bad_batch_records_raise(raw: bytes) -> None:
    with pytest.raises((ValueError, TypeError)):
        decode_events(raw)


def test_state_codec_reads_raw_json_dicts_and_nothing() -> None:
    fold = fold_events(KeyState(), _events(6, 120), CFG)
    assert load_state(dump_state(fold.state)) == fold.state
    assert load_state(json.loads(dump_state(fold.state))) == fold.state  # the JSON-serialised table's dicts
    assert load_state(None) == KeyState() == load_state({})


def test_a_state_knows_which_records_it_holds_across_the_changelog() -> None:
    """The windows agent skips a record a restarted worker re-reads: its state already counts it."""
    fold = fold_events(KeyState(), _events(4, 20), CFG)
    state = load_state(dump_state(replace(fold.state, applied=(2, 41))))
    assert state == replace(fold.state, applied=(2, 41))
    assert state.holds(2, 41) and state.holds(2, 7)
    assert not state.holds(2, 42)
    assert not state.holds(1, 7)  # another partition (the topic was repartitioned): no claim
    assert not KeyState().holds(0, 0)
