"""``retrain --on-drift`` on the real model-events topic, with a stub job (training is tested elsewhere)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from models.retrain import on_drift
from models.rollout import events
from tonewatch.core.settings import Settings

pytestmark = pytest.mark.integration


def test_a_burst_of_drift_events_starts_one_retrain_and_history_none(stack_settings: Settings) -> None:
    settings = stack_settings.updated(kafka__topic_prefix=f"t{uuid.uuid4().hex[:10]}",
                                                 retrain__drift_cooldown_s=600.0)
    events.publish(settings, "sentiment", 1, "drift", reason="before the job started: history")
    time.sleep(1.5)  # the follower ignores events older than its start, to the second
    runs: list[dict[str, Any]] = []
    errors: list[Exception] = []
    done = threading.Event()
    follower = threading.Thread(target=on_drift, args=(settings, "sentiment", runs.append, errors.append),
                                kwargs={"stop": done.is_set}, daemon=True)
    follower.start()
    try:
        time.sleep(1.5)
        events.publish(settings, "topic", 1, "drift", reason="another model")
        events.publish(settings, "sentiment", 1, "promoted", reason="not drift")
        for i in range(3):  # one per drift window per worker
            events.publish(settings, "sentiment", 1, "drift", reason=f"psi 0.{3 + i}")
        deadline = time.monotonic() + 60
        while not runs and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(5)  # the rest of the burst has been read by now: nothing else may start
    finally:
        done.set()
        follower.join(timeout=30)
    assert not follower.is_alive() and errors == []
    assert [(r["model"], r["event"], r["reason"]) for r in runs] == [("sentiment", "drift", "psi 0.3")]
