"""When ``retrain --every`` and ``retrain --on-drift`` run the job: fake clocks, no waiting, no broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from models.retrain_triggers import drift_due, follow_drift, next_delay, run_every

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class Clock:
    """Monotonic and wall time that move only when told (or when a fake job or sleep moves them)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.t - 1000.0)

    def sleep(self, s: float) -> None:
        assert s >= 0
        self.t += s


def drift(at: datetime, model: str = "sentiment") -> bytes:
    return json.dumps({"event": "drift", "model": model, "version": 1,
                       "at": at.isoformat().replace("+00:00", "Z")}).encode()


def test_drift_triggers_only_new_events_of_the_model_outside_the_cooldown() -> None:
    ev = {"event": "drift", "model": "sentiment", "version": 1, "at": "2026-01-05T12:00:05Z"}
    assert drift_due(ev, "sentiment", T0, None, 3600, 100.0)
    assert not drift_due(ev, "topic", T0, None, 3600, 100.0)
    assert not drift_due({**ev, "event": "promoted"}, "sentiment", T0, None, 3600, 100.0)
    assert not drift_due({**ev, "at": "2026-01-05T11:59:59Z"}, "sentiment", T0, None, 3600, 100.0)
    assert not drift_due({**ev, "at": "garbage"}, "sentiment", T0, None, 3600, 100.0)
    assert drift_due({**ev, "at": "2026-01-05T12:00:05"}, "sentiment", T0, None, 3600, 100.0)  # naive = UTC
    assert not drift_due(ev, "sentiment", T0, 50.0, 3600, 100.0)
    assert drift_due(ev, "sentiment", T0, 50.0, 3600, 3700.0)


def test_every_keeps_a_cadence_from_each_start_and_survives_a_failed_run() -> None:
    assert next_delay(0.0, 10.0, 60.0) == 50.0 and next_delay(0.0, 90.0, 60.0) == 0.0
    clock, starts, errors = Clock(), [], []
    durations = iter([10.0, 90.0, 5.0, 1.0])

    def job(_: Any) -> None:
        starts.append(clock.t)
        clock.t += next(durations)
        if len(starts) == 2:
            raise RuntimeError("gate data unreadable")

    assert run_every(job, 60.0, errors.append, runs=4, clock=clock, sleep=clock.sleep) == 4
    # second run overran its 60 s slot: the third starts at once, the fourth back on a 60 s cadence
    assert [s - 1000.0 for s in starts] == [0.0, 60.0, 150.0, 210.0]
    assert [str(e) for e in errors] == ["gate data unreadable"]
    assert clock.t - 1000.0 == 211.0  # no sleep after the last run


def test_a_burst_of_drift_events_starts_one_retrain_and_a_later_one_another() -> None:
    clock, runs, errors = Clock(), [], []

    def events() -> Any:
        yield drift(T0 - timedelta(hours=1))  # history from before the follower started
        yield b"not json"
        yield json.dumps(["a list"]).encode()
        yield None
        yield drift(T0 + timedelta(seconds=5), model="topic")
        for _ in range(5):  # one per window per worker
            clock.t += 1
            yield drift(clock.wall())
        clock.t += 3500  # within an hour of the first run's end: nothing new is due
        yield drift(clock.wall())
        clock.t += 400
        yield drift(clock.wall())

    def job(event: Any) -> None:
        runs.append((clock.t, event["at"]))
        clock.t += 300  # the retrain itself
        if len(runs) == 2:
            raise RuntimeError("training failed")

    n = follow_drift(events(), "sentiment", job, 3600.0, errors.append, clock=clock, wall=clock.wall)
    assert n == 2 and len(runs) == 2 and [str(e) for e in errors] == ["training failed"]
    assert runs[0] == (1001.0, "2026-01-05T12:00:01Z")
    assert runs[1][0] - 1000.0 == 1 + 300 + 4 + 3500 + 400


def test_drift_published_while_a_run_trains_is_answered_by_that_run_only_once() -> None:
    clock, runs = Clock(), []

    def events() -> Any:
        clock.t += 1
        yield drift(clock.wall())
        # read after the run: published during it (after its start), no cooldown: one more run
        yield drift(T0 + timedelta(seconds=100))
        yield drift(T0 + timedelta(seconds=150))  # before the second run started: answered by it

    def job(event: Any) -> None:
        runs.append(event["at"])
        clock.t += 300

    assert follow_drift(events(), "sentiment", job, 0.0, lambda e: None, clock=clock, wall=clock.wall) == 2
    assert runs == ["2026-01-05T12:00:01Z", "2026-01-05T12:01:40Z"]
