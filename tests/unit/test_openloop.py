"""The pure parts of the open-loop bench and the surge-to-alert measurement (tonewatch/perf/openloop.py,
tonewatch/perf/surge_latency.py): schedules, step plans, percentiles, trend-time matching, the parts' arithmetic."""

from __future__ import annotations

import ast
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streams.windows.watermark import Mark
from tonewatch.perf.openloop import (
    fold_index,
    percentiles,
    plan_steps,
    plot_curve,
    schedule,
    send_on_schedule,
    step_messages,
    step_result,
    target_check,
    trend_times,
)
from tonewatch.perf.surge_latency import (
    TICKER,
    Receiver,
    alert_parts,
    first_firing,
    plan_surge,
    surge_feed,
    surge_text,
    watermark_passed,
)

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    """Time that moves only when slept through or when the fake producer sends (``cost_s`` per send)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class FakeProducer:
    def __init__(self, clock: FakeClock, cost_s: float) -> None:
        self.clock, self.cost_s = clock, cost_s
        self.sent: list[tuple[float, bytes]] = []
        self.flushed = False

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((self.clock.now, key))
        self.clock.now += self.cost_s

    def flush(self) -> None:
        self.flushed = True


def test_schedule_is_evenly_spaced_at_the_rate_and_refuses_nonsense() -> None:
    times = schedule(4.0, 2.0, 100.0)
    assert times == [100.0, 100.25, 100.5, 100.75, 101.0, 101.25, 101.5, 101.75]
    assert schedule(0.5, 1.0, 7.0) == [7.0]  # at least one message
    with pytest.raises(ValueError):
        schedule(0, 1.0, 0.0)
    with pytest.raises(ValueError):
        schedule(10, -1.0, 0.0)


def test_steps_are_fractions_of_the_ceiling() -> None:
    assert plan_steps(10_000) == [1000.0, 2500.0, 5000.0, 7500.0, 9000.0]
    assert plan_steps(333.0, [0.5]) == [166.5]
    for bad in ([], [0.0], [1.5]):
        with pytest.raises(ValueError):
            plan_steps(100, bad)
    with pytest.raises(ValueError):
        plan_steps(0)


def test_percentiles_interpolate_and_say_none_when_empty() -> None:
    got = percentiles([float(v) for v in range(1, 1001)], "scored_")
    assert got == {"scored_p50_ms": 500.5, "scored_p99_ms": 990.0, "scored_p99_9_ms": 999.0}
    assert percentiles([]) == {"p50_ms": None, "p99_ms": None, "p99_9_ms": None}


def test_a_slow_producer_sends_late_and_the_lateness_is_kept_not_hidden() -> None:
    clock = FakeClock(0.0)
    prod = FakeProducer(clock, cost_s=0.02)  # 50 msg/s at most, against a schedule of 100 msg/s
    msgs = step_messages(schedule(100, 0.1, 1.0), "r", ["calm"])
    late = send_on_schedule(prod, "news", msgs, clock=clock, sleep=clock.sleep)
    assert [k for _, k in prod.sent] == [m.key for m in msgs] and prod.flushed
    assert all(at >= m.intended for (at, _), m in zip(prod.sent, msgs, strict=True))  # never early
    assert late[0] == pytest.approx(0.0, abs=0.06)  # slept in steps of at most SLEEP_CAP_S
    assert late[-1] > late[0] + 0.05  # behind schedule: each later message is later still


def test_a_fast_producer_keeps_the_schedule_and_stop_ends_it_early() -> None:
    clock = FakeClock(0.0)
    prod = FakeProducer(clock, cost_s=0.0)
    msgs = step_messages(schedule(10, 1.0, 0.3), "r", ["a", "b"])
    assert max(send_on_schedule(prod, "news", msgs, clock=clock, sleep=clock.sleep)) < 1e-9
    assert json.loads(msgs[1].value) == {"id": "ol-r-1", "source": "news", "text": "b",
                                         "ts": "1970-01-01T00:00:00.400000Z"}  # event time = intended send time
    prod2 = FakeProducer(clock, cost_s=0.0)
    late = send_on_schedule(prod2, "news", step_messages(schedule(10, 1.0, clock.now), "s", ["a"]), clock=clock,
                            sleep=clock.sleep, stop=lambda: len(prod2.sent) >= 3)
    assert len(late) == len(prod2.sent) == 3


def test_a_message_counts_once_the_last_of_its_keys_has_folded_it() -> None:
    # (changelog partition, key, applied, time): ticker|A folds offset 5 at 10.0; source|news at 12.0
    index = fold_index([
        (0, "ticker|A", (0, 3), 9.0), (0, "ticker|A", (0, 5), 10.0), (0, "ticker|A", (0, 9), 15.0),
        (0, "ticker|A", (0, 5), 20.0),  # a restart's older state: not the first write covering offset 5
        (0, "source|news", (0, 5), 12.0), (1, "source|news", (0, 5), 1.0),  # another partition's applied: skipped
        (0, "topic|x", None, 2.0),
    ])
    partials = [(0, 5, "ticker|A", ["m1", "m2"]), (0, 5, "source|news", ["m1"]), (0, 7, "ticker|A", ["m3"]),
                (0, 11, "ticker|A", ["m4"]), (0, 8, "source|news", ["m4"])]
    got = trend_times(partials, index)
    assert got == {"m1": 12.0, "m2": 10.0, "m3": 15.0}  # m4: its ticker key never folded offset 11


def test_a_step_result_measures_from_intended_times() -> None:
    msgs = step_messages([10.0, 10.5, 11.0], "r", ["x"])
    scored = {"ol-r-0": 10.1, "ol-r-1": 10.7, "ol-r-2": 11.3, "other": 0.0}
    trends = {"ol-r-0": 10.4, "ol-r-2": 12.0}
    res = step_result(20.0, 0.5, msgs, [0.0, 0.001, 0.0], scored, trends)
    assert res["messages"] == 3 and res["scored"] == 3 and res["trend"] == 2
    assert res["scored_p50_ms"] == pytest.approx(200.0) and res["scored_p99_9_ms"] == pytest.approx(300.0, abs=0.5)
    assert res["trend_p50_ms"] == pytest.approx(700.0)
    assert res["sent_msgs_per_s"] == 2.0 and res["offered_msgs_per_s"] == 20.0 and res["fraction"] == 0.5
    behind = step_result(20.0, 0.5, msgs, [0.0, 0.0, 1.0], scored, trends)  # the last one went out 1 s late
    assert behind["sent_msgs_per_s"] == 1.0 and behind["producer_late_p99_ms"] == pytest.approx(980.0)


def test_the_target_is_judged_at_half_the_ceiling() -> None:
    msgs = step_messages([1.0, 2.0], "r", ["x"])
    fast = step_result(10.0, 0.5, msgs, [0, 0], {"ol-r-0": 1.1, "ol-r-1": 2.2}, {})
    slow = step_result(20.0, 0.9, msgs, [0, 0], {"ol-r-0": 1.5, "ol-r-1": 2.5}, {})
    assert target_check([slow, fast]) == {"fraction": 0.5, "scored_p99_ms": 199.0, "target_ms": 250.0, "met": True}
    assert target_check([slow])["met"] is None
    assert target_check([slow], fraction=0.9)["met"] is False


def test_the_plot_is_a_png_even_with_steps_lacking_figures(tmp_path: Path) -> None:
    msgs = step_messages([1.0, 2.0], "r", ["x"])
    steps = [step_result(10.0, 0.1, msgs, [0, 0], {"ol-r-0": 1.1, "ol-r-1": 2.2}, {}),
             step_result(20.0, 0.2, msgs, [0, 0], {"ol-r-0": 1.3, "ol-r-1": 2.5}, {"ol-r-0": 1.9})]
    path = plot_curve(steps, tmp_path / "sub" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _trivial_negative_words() -> tuple[bytes, ...]:
    """The keywords benchmarks/trivial_repo's models call negative, read from the model's source."""
    tree = ast.parse((REPO / "benchmarks" / "trivial_repo" / "sentiment" / "1" / "model.py").read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "NEGATIVE" for t in n.targets))
    words: tuple[bytes, ...] = ast.literal_eval(node.value)
    return words


def test_the_surge_is_eight_in_ten_negative_to_the_trivial_models_and_calm_one_in_ten() -> None:
    words = _trivial_negative_words()

    def share(surging: bool) -> float:
        return sum(any(w.decode() in surge_text(i, surging).lower() for w in words) for i in range(100)) / 100

    assert share(True) == 0.8 and share(False) == 0.1
    assert all(f"${TICKER}" in surge_text(i, s) for i in range(10) for s in (True, False))


def test_the_surge_starts_on_a_window_boundary_after_the_warm_up_windows() -> None:
    plan = plan_surge(1003.0, 10, warm_windows=3, surge_windows=3, tail_s=25)
    assert (plan.surge_start, plan.surge_end, plan.end) == (1040, 1070, 1095)
    assert plan_surge(1000.0, 10, warm_windows=3).surge_start == 1030  # already on a boundary
    feed = surge_feed(plan, 2.0, "r")
    surging = [json.loads(m.value)["text"] in {surge_text(i, True) for i in range(5)} for m in feed]
    in_surge = [plan.surge_start <= m.intended < plan.surge_end for m in feed]
    assert surging == in_surge and len(feed) == 2 * 92
    with pytest.raises(ValueError):
        plan_surge(0.0, 10, surge_windows=0)


def test_the_watermark_passes_a_close_only_once_every_busy_input_has() -> None:
    records = [(1.0, {"news-0": Mark(50.0)}, ["news-0", "news-1"]),  # news-1 not heard yet: no watermark
               (2.0, {"news-1": Mark(40.0)}, []),  # min 40
               (3.0, {"news-0": Mark(70.0)}, []),  # min still 40
               (4.0, {"news-1": Mark(45.0, idle=True)}, []),  # news-1 idle: the busy one's 70 counts
               (5.0, {"news-1": Mark(90.0)}, [])]
    assert watermark_passed(records, 60.0) == 4.0
    assert watermark_passed(records, 80.0) is None
    assert watermark_passed(records[:3], 40.0) == 2.0


def test_alert_parts_add_up_to_the_whole() -> None:
    parts = alert_parts(first_surge=100.0, close_at=122.0, moved_at=122.4, alert_at=122.9, webhook_at=128.0)
    assert parts["to_alert_s"] == 22.9 and parts["to_webhook_s"] == 28.0
    assert parts["close_wait_s"] + parts["scoring_s"] + parts["windows_s"] == pytest.approx(22.9)  # type: ignore[operator]
    assert parts["notifier_s"] == pytest.approx(5.1) and parts["close_to_alert_s"] == 0.9
    assert parts["close_to_alert_target_met"] is True
    late = alert_parts(100.0, 122.0, None, 125.0, None)
    assert late["close_to_alert_target_met"] is False and late["scoring_s"] is None and late["notifier_s"] is None


def test_the_first_firing_alert_of_the_surge_ticker_is_picked() -> None:
    alerts: list[tuple[float, dict[str, Any]]] = [
        (1.0, {"dimension": "source", "key": "news", "status": "firing"}),
        (2.0, {"dimension": "ticker", "key": TICKER, "status": "resolved"}),
        (3.0, {"dimension": "ticker", "key": TICKER, "status": "firing", "id": "a"}),
        (4.0, {"dimension": "ticker", "key": TICKER, "status": "firing", "id": "b"})]
    assert first_firing(alerts) == (3.0, alerts[2][1])
    assert first_firing(alerts[:2]) is None


def test_the_receiver_notes_when_each_alert_arrived() -> None:
    receiver = Receiver()
    try:
        body = json.dumps({"children": [{"id": "a1", "dimension": "ticker", "key": TICKER}]}).encode()
        req = urllib.request.Request(receiver.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 204
        assert receiver.first("a1") is not None and receiver.first(key=f"ticker|{TICKER}") is not None
        assert receiver.first("a2") is None and receiver.first(key="ticker|OTHER") is None
    finally:
        receiver.close()
