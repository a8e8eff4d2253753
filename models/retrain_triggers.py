"""When the long-running retrain job runs: on a fixed cadence (``--every``) or on drift (``--on-drift``).

Clock, sleep and the event source are injected so the decisions are unit-tested without waiting or
a broker. A failed run is reported and the loop goes on: the service must outlive one bad run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from streams.control.rejects import InvalidRecord, load_json, preview

log = logging.getLogger(__name__)

Job = Callable[[dict[str, Any] | None], object]
OnError = Callable[[Exception], None]


def next_delay(started: float, ended: float, every_s: float) -> float:
    """Seconds until the next run: a fixed cadence from each start; at once when a run overran it."""
    return max(0.0, started + every_s - ended)


def drift_due(event: dict[str, Any], name: str, since: datetime, last_end: float | None, cooldown_s: float,
              now: float) -> bool:
    """A drift event of this model, newer than ``since``, outside the cooldown of the last run's end."""
    if event.get("event") != "drift" or event.get("model") != name:
        return False
    try:
        at = datetime.fromisoformat(str(event.get("at", "")).replace("Z", "+00:00"))
    except ValueError:
        return False
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at >= since and (last_end is None or now - last_end >= cooldown_s)


def run_every(job: Job, every_s: float, on_error: OnError, *, runs: int | None = None,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Run ``job`` every ``every_s`` seconds (forever, or ``runs`` times); returns how many ran."""
    n = 0
    while runs is None or n < runs:
        started = clock()
        try:
            job(None)
        except Exception as exc:
            on_error(exc)
        n += 1
        if runs is None or n < runs:
            sleep(next_delay(started, clock(), every_s))
    return n


def follow_drift(values: Iterable[bytes | None], name: str, job: Job, cooldown_s: float, on_error: OnError, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Run ``job`` on each due drift event among model-events values; returns how many runs started.

    Events older than the follower's start are history, not news; events published before a run
    started are answered by it; and within ``cooldown_s`` of a run's end nothing starts another, so a
    burst of drift events (one per window per worker) gives one retrain.
    """
    since, last_end, n = wall().replace(microsecond=0), None, 0
    for raw in values:
        if raw is None:  # a tombstone: nothing to read, nothing wrong
            continue
        try:
            event = load_json(raw)
        except InvalidRecord as exc:  # json.loads raised RecursionError on deep nesting, out of the follower
            log.warning("model-events record skipped: %s [%s]", exc.reason, preview(raw))
            continue
        if not isinstance(event, dict) or not drift_due(event, name, since, last_end, cooldown_s, clock()):
            continue
        since, n = wall().replace(microsecond=0), n + 1
        try:
            job(event)
        except Exception as exc:
            on_error(exc)
        last_end = clock()
    return n
