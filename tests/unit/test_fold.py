"""The combiner and per-key batching must not change what the detector sees: the same windows, the same
late events, the same alerts as folding every event alone."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.records import Scored
from streams.windows.detector import (
    KeyState,
    Partial,
    TrendEvent,
    Update,
    advance,
    apply_event,
    apply_partial,
    window_start,
)
from streams.windows.fold import (
    decode_partials,
    dump_state,
    encode_partials,
    fold_events,
    group_by_key,
    load_state,
    pack_partials,
)
from streams.windows.trends import PARTIAL_ID_CHARS, Combiner, dimension_keys
from tonewatch.core.sections import DetectorSettings

CFG = DetectorSettings(window_s=10, allowed_lateness_s=5, rolling_s=30, min_volume=3, cooldown_s=20, top_messages=3)


def _scored(seed: int, n: int = 400) -> list[Scored]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = i * 0.5 + rng.uniform(-12, 2)  # some late beyond the lateness, most in order
        surge = 150 < i < 200
        negative = rng.random() < (0.9 if surge else 0.1)
        p = round(rng.random(), 3)  # ties among drivers too
        out.append(Scored(
            id=f"m{i}", source="news", ts=datetime.fromtimestamp(1_700_000_000 + ts, UTC), text=f"text {i}",
            tickers=tuple(rng.sample(["TSLA", "AAPL", "NVDA"], rng.randint(0, 2))), sectors=(),
            sentiment="negative" if negative else "neutral", sentiment_probs={"negative": p},
            topic=rng.choice(["M&A", "Earnings"]), topic_probs={}, model_versions={"sentiment": str(1 + i // 200)},
            scored_at=datetime.now(UTC), inference_ms=1.0,
        ))
    return out


def _events(s: Scored) -> list[TrendEvent]:
    """The message's trend events, one per key, as the stage sent them before the combiner."""
    return [TrendEvent(dim, key, s.ts.timestamp(), s.sentiment == "negative", s.p_negative, s.id, s.text, s.source,
                       s.model_versions, tickers=s.tickers) for dim, key in dimension_keys(s)]


def _outcome(updates: list[tuple[list[str], Update]]) -> dict[str, Any]:
    """What leaves the windows agent: closed windows (trends), alert transitions, late message ids."""
    closed, alerts, late = [], [], set()
    for ids, u in updates:
        if not u.accepted:
            late.update(ids)
        for c in u.closed:
            w = c.window
            closed.append((w.start, w.count, w.negative, round(w.p_negative_sum, 9), w.drivers, c.baseline, c.rolling))
        # the same alerts, in the same windows; the severity may differ: judged once the whole partial is in,
        # where events one by one fix it at the event that crossed the bar
        alerts.extend((t.status, t.alert_id) for t in u.transitions)
    return {"closed": closed, "alerts": alerts, "late": late}


def _partial_by_partial(state: KeyState, partials: list[Partial]) -> tuple[KeyState, list[Update]]:
    """Each partial added, then the key advanced to its own latest event time: as ``apply_event`` does per event."""
    updates = []
    for p in partials:
        u = apply_partial(state, p, CFG)
        if u.accepted:
            wm = p.ts if u.state.watermark is None else max(u.state.watermark, p.ts)
            u = advance(u.state, wm, p.dimension, p.key, CFG)
            state = u.state
        updates.append(u)
    return state, updates


@pytest.mark.parametrize("id_chars", [PARTIAL_ID_CHARS, 20])  # 20: a window of a batch goes in partials of 2-4
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_partials_fold_like_their_events_one_by_one(seed: int, id_chars: int) -> None:
    msgs = _scored(seed)
    batches = [sorted(msgs[i:i + 37], key=lambda s: s.ts) for i in range(0, len(msgs), 37)]  # as the stage sorts
    expected: dict[str, KeyState] = {}
    expected_updates: dict[str, list[tuple[list[str], Update]]] = {}
    for batch in batches:
        for s in batch:
            for ev in _events(s):
                key = f"{ev.dimension}|{ev.key}"
                update = apply_event(expected.get(key, KeyState()), ev, CFG)
                expected_updates.setdefault(key, []).append(([ev.message_id], update))
                if update.accepted:
                    expected[key] = update.state
    got: dict[str, KeyState] = {}
    got_updates: dict[str, list[tuple[list[str], Update]]] = {}
    for batch in batches:
        combiner = Combiner(CFG.window_s, CFG.top_messages, id_chars)
        for s in batch:
            combiner.add(s)
        for key, partials in combiner.partials().items():
            partials = decode_partials(encode_partials(partials))  # through the wire format
            state, updates = _partial_by_partial(load_state(got.get(key) and dump_state(got[key])), partials)
            got[key] = state
            got_updates.setdefault(key, []).extend(
                (list(p.message_ids), u) for p, u in zip(partials, updates, strict=True))
    assert got.keys() == expected.keys()
    for key in expected:
        mine, theirs = _outcome(got_updates[key]), _outcome(expected_updates[key])
        assert mine == theirs, key
        firing = [(s.firing.alert_id, s.firing.started) if s.firing else None for s in (got[key], expected[key])]
        assert firing[0] == firing[1]
        assert replace(got[key], windows=(), firing=None) == replace(expected[key], windows=(), firing=None)
        assert [(w.start, w.count, w.negative, w.drivers) for w in got[key].windows] == \
            [(w.start, w.count, w.negative, w.drivers) for w in expected[key].windows]
    everything = [_outcome(u) for u in expected_updates.values()]
    assert any(o["late"] for o in everything), "the data must exercise late events"
    assert any(o["alerts"] for o in everything), "and alert transitions"
    assert any(w.drivers for s in expected.values() for w in s.windows), "and drivers"


def test_a_partial_sums_its_events_and_keeps_the_latest_versions() -> None:
    msgs = sorted(_scored(9, 40), key=lambda s: s.ts)
    combiner = Combiner(CFG.window_s, CFG.top_messages)
    for s in msgs:
        combiner.add(s)
    for key, partials in combiner.partials().items():
        assert [p.ts for p in partials] == sorted(p.ts for p in partials)  # window order
        for p in partials:
            mine = [s for s in msgs if s.id in p.message_ids]
            assert f"{p.dimension}|{p.key}" == key and p.count == len(mine) == len(p.message_ids)
            assert p.negative == sum(s.sentiment == "negative" for s in mine)
            assert p.ts == max(s.ts.timestamp() for s in mine)
            assert p.model_versions == mine[-1].model_versions
            assert len(p.drivers) <= CFG.top_messages


def test_a_window_goes_on_in_a_new_partial_past_the_id_budget() -> None:
    msgs = sorted(_scored(5, 200), key=lambda s: s.ts)
    combiner = Combiner(CFG.window_s, CFG.top_messages, id_chars=50)
    for s in msgs:
        combiner.add(s)
    per_window: dict[tuple[str, float], list[Partial]] = {}
    for key, partials in combiner.partials().items():
        for p in partials:
            assert sum(map(len, p.message_ids[:-1])) < 50  # closed once it reached the budget
            per_window.setdefault((key, window_start(p.ts, CFG.window_s)), []).append(p)
    assert any(len(ps) > 1 for ps in per_window.values())
    for (key, _), ps in per_window.items():
        ids = [i for p in ps for i in p.message_ids]
        expected = [s.id for s in msgs if key in {f"{d}|{k}" for d, k in dimension_keys(s)}
                    and window_start(s.ts.timestamp(), CFG.window_s) == window_start(ps[0].ts, CFG.window_s)]
        assert ids == expected  # every message once, in order, across the window's partials


def test_records_pack_many_keys_in_order_under_the_size_limit() -> None:
    msgs = sorted(_scored(8, 300), key=lambda s: s.ts)
    combiner = Combiner(CFG.window_s, CFG.top_messages)
    for s in msgs:
        combiner.add(s)
    partials = [p for ps in combiner.partials().values() for p in ps]
    records = list(pack_partials(partials, max_bytes=2000))
    assert len(records) > 3 and all(len(r) <= 2000 for r in records)
    assert [p for r in records for p in decode_partials(r)] == partials
    huge = replace(partials[0], message_ids=tuple(f"id-{i}" for i in range(1000)))
    assert [decode_partials(r) for r in pack_partials([partials[1], huge, partials[2]], 2000)] == \
        [[partials[1]], [huge], [partials[2]]]  # a partial is never split, even one over the limit


def test_group_by_key_keeps_arrival_order_per_key() -> None:
    events = [ev for s in _scored(4, 50) for ev in _events(s)]
    for key, group in group_by_key(events).items():
        assert [e.message_id for e in group] == [e.message_id for e in events if f"{e.dimension}|{e.key}" == key]


def test_records_round_trip_and_event_records_still_read() -> None:
    """Records of single events are what workers before the combiner wrote: a rolling upgrade meets them."""
    events = _events(_scored(5, 3)[0])
    partials = [Partial.of(ev) for ev in events]
    assert decode_partials(encode_partials(partials)) == partials
    assert decode_partials(json.dumps({"events": [ev.__dict__ for ev in events]}).encode()) == partials
    assert decode_partials(json.dumps(events[0].__dict__).encode()) == [partials[0]]


@pytest.mark.parametrize("raw", [
    b"[]", b'{"events": []}', b'{"partials": []}', b'{"events": [{"dimension": "x"}]}', b"nope",
    b'{"partials": [{"dimension": "ticker", "key": "A", "ts": 1.0, "count": 0, "negative": 0, "p_negative_sum": 0}]}',
    b'{"partials": [{"dimension": "ticker", "key": "A", "ts": 1.0, "count": 2, "negative": 3, "p_negative_sum": 0}]}',
    b'{"partials": [{"dimension": "ticker", "key": "A", "ts": "soon", "count": 1, "negative": 0,'
    b' "p_negative_sum": 0}]}',
    b'{"partials": [{"dimension": "ticker", "key": "A", "ts": 1.0, "count": 1, "negative": 0, "p_negative_sum": 0,'
    b' "extra": 1}]}',
    b'{"partials": [{"dimension": "ticker", "key": "A", "ts": 1.0, "count": 1, "negative": 0, "p_negative_sum": 0,'
    b' "adjusted_sum": "many"}]}',
    b'{"partials": [{"dimension": "ticker", "key": "A", "ts": 1.0, "count": 1, "negative": 0, "p_negative_sum": 0,'
    b' "adjusted_sum": 1e999}]}',
])
def test_bad_records_raise(raw: bytes) -> None:
    with pytest.raises((ValueError, TypeError)):
        decode_partials(raw)


def _folded() -> KeyState:
    partials = [Partial.of(ev) for s in sorted(_scored(6, 120), key=lambda s: s.ts) for ev in _events(s)
                if ev.dimension == "source"]
    return fold_events(KeyState(), partials, CFG).state


def test_state_codec_reads_raw_json_dicts_and_nothing() -> None:
    state = _folded()
    assert load_state(dump_state(state)) == state
    assert load_state(json.loads(dump_state(state))) == state  # the JSON-serialised table's dicts
    assert load_state(None) == KeyState() == load_state({})


def test_a_state_knows_which_records_it_holds_across_the_changelog() -> None:
    """The windows agent skips a record a restarted worker re-reads: its state already counts it."""
    folded = _folded()
    state = load_state(dump_state(replace(folded, applied=(2, 41))))
    assert state == replace(folded, applied=(2, 41))
    assert state.holds(2, 41) and state.holds(2, 7)
    assert not state.holds(2, 42)
    assert not state.holds(1, 7)  # another partition (the topic was repartitioned): no claim
    assert not KeyState().holds(0, 0)
