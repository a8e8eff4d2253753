"""The per-request deadline backs off while Triton is saturated, so retries stop re-queuing the same work."""

from __future__ import annotations

from streams.score.triton_client import next_deadline


def test_deadline_doubles_on_timeouts_up_to_the_cap_and_eases_back_after_successes() -> None:
    d = 30.0
    seen = []
    for _ in range(6):
        d = next_deadline(d, 30.0, exceeded=True)
        seen.append(d)
    assert seen == [60.0, 120.0, 240.0, 480.0, 480.0, 480.0]  # 16x the base at most
    d = next_deadline(d, 30.0, exceeded=False)
    assert d == 240.0
    for _ in range(10):
        d = next_deadline(d, 30.0, exceeded=False)
    assert d == 30.0  # never below the configured deadline
