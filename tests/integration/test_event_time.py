"""Event time you can trust: a feed's closed windows, alerts and late messages depend on its events alone.

The same feed goes through the real worker paced (as a live source), unpaced (as fast as the broker takes
it), unpaced into two workers, unpaced with the worker killed with -9 midway, and through an outage (the
worker stopped for ten windows of event time while the feed keeps coming); every run must close the same
windows with the same counts, raise the same alerts and dead-letter the same late messages. Default window
(60 s) and allowed lateness (120 s), so lateness is real.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from tests.integration.conftest import REPO, Worker, wait_watermark
from tests.integration.feeds import (
    COMPANIES,
    MINUTES,
    SPIKE_TICKER,
    SURGE_EXTRA_PER_MINUTE,
    EventTimeFeed,
    build_event_time_feed,
    split_at_minute,
    write_lines,
)
from tonewatch.core.kafka_io import client_config, count_records, read_json, topic_size
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INPUTS
from tonewatch.replay import replay, wait_for_pipeline

pytestmark = pytest.mark.integration

DETECTOR = {"detector__window_s": 60, "detector__allowed_lateness_s": 120}
GENERATED_SPEED, DEMO_SPEED = 60, 120  # 20 minutes of event time in 20 s; the demo's 40 minutes in 20 s
OUTAGE_START_MIN, OUTAGE_WINDOWS = 5, 10
DEMO_FEED = REPO / "data" / "sample_feed.jsonl"
Pipeline = Callable[..., Worker]


@dataclass(frozen=True)
class RunResult:
    """What a run decided, in a form two runs can be compared in."""

    windows: list[tuple[str, str, float, int, int]]  # closed: (dimension, key, window_start, count, negative)
    alerts: list[tuple[str, str, str, str]]  # (dimension, key, window start, status), each once
    late_ids: list[str]  # dead-lettered with stage "late"

    def firing(self, dimension: str) -> set[str]:
        return {key for dim, key, _, status in self.alerts if dim == dimension and status == "firing"}


def _payload_id(dead: dict[str, Any]) -> str | None:
    try:
        msg = json.loads(dead.get("payload") or "")
    except (json.JSONDecodeError, TypeError):
        return None
    return str(msg["id"]) if isinstance(msg, dict) and "id" in msg else None


def outcome(s: Settings) -> RunResult:
    trends = read_json(s.kafka, s.kafka.topic("trends"))
    alerts = read_json(s.kafka, s.kafka.topic("alerts"))
    dead = read_json(s.kafka, s.kafka.topic("dead-letter"))
    return RunResult(
        windows=sorted((t["dimension"], t["key"], t["window_start"], t["count"], t["negative"]) for t in trends),
        alerts=sorted({(a["dimension"], a["key"], a["window"]["start"], a["status"]) for a in alerts}),
        late_ids=sorted(str(_payload_id(d)) for d in dead if d.get("stage") == "late"),
    )


def _logs(workers: list[Worker]) -> str:
    return "\n".join(f"--- {w.log_path.name}\n{w.log_tail(40)}" for w in workers)


def _accounted(s: Settings) -> int:
    """Messages that came out: distinct ids scored or dead-lettered, and dead letters without a readable id."""
    ids = {r["id"] for r in read_json(s.kafka, s.kafka.topic("scored"))}
    dead = read_json(s.kafka, s.kafka.topic("dead-letter"))
    ids |= {i for d in dead if (i := _payload_id(d)) is not None}
    return len(ids) + sum(1 for d in dead if _payload_id(d) is None)


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def last_event_time(lines: list[str]) -> float:
    """The latest event time in a feed: where the watermark ends once its partitions are idle (a time ahead of
    the clock is refused by the worker, so it never counts)."""
    now = time.time()
    times: list[float] = []
    for line in lines:
        try:
            ts = _epoch(json.loads(line)["ts"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a malformed line: dead-lettered, no event time
        if ts <= now:
            times.append(ts)
    return max(times)


def drain(s: Settings, workers: list[Worker], lines: list[str], timeout_s: float = 240.0) -> None:
    """Until the workers have caught up (input topics and trend-events committed), every message came out,
    the watermark reached the feed's last event time (its windows closed) and trends and alerts are quiet."""
    deadline = time.monotonic() + timeout_s
    left = wait_for_pipeline(s, timeout_s)
    assert not any(left.values()), f"not caught up after {timeout_s}s: {left}\n{_logs(workers)}"
    messages = sum(1 for line in lines if line.strip())
    while (out := _accounted(s)) < messages:
        assert time.monotonic() < deadline, f"{out}/{messages} messages came out\n{_logs(workers)}"
        time.sleep(1.0)
    wait_watermark(workers, last_event_time(lines))
    # the marks that took the watermark there closed the last windows: once the windows agent has committed them,
    # those windows' trends and alerts are written (a batch commits after its sends), however slow the machine
    left = wait_for_pipeline(s, max(deadline - time.monotonic(), 1.0))
    assert not any(left.values()), f"trend events not committed after the watermark: {left}\n{_logs(workers)}"
    sizes, quiet_since = (-1, -1), time.monotonic()
    while time.monotonic() - quiet_since < 3.0:  # the closing windows' trends and alerts are written
        assert all(w.alive() for w in workers) and time.monotonic() < deadline, _logs(workers)
        now = (topic_size(s.kafka, s.kafka.topic("trends")), topic_size(s.kafka, s.kafka.topic("alerts")))
        if now != sizes:
            sizes, quiet_since = now, time.monotonic()
        time.sleep(0.5)


def run_once(pipeline: Pipeline, tmp_path: Path, lines: list[str], speed: float | None, workers: int = 1
             ) -> RunResult:
    """One or more workers on fresh topics, the whole feed replayed at ``speed``, drained."""
    first = pipeline(**DETECTOR)
    s = first.settings
    started = [first] + [pipeline(kafka__topic_prefix=s.kafka.topic_prefix, **DETECTOR) for _ in range(workers - 1)]
    if workers > 1:
        time.sleep(5.0)  # every worker is in the groups before any data flows (as in test_scaling)
    replay(s, write_lines(tmp_path / "feed.jsonl", lines), speed)
    drain(s, started, lines)
    result = outcome(s)
    for w in started:  # idle workers still take CPU from the next run
        w.stop()
    return result


def run_outage(pipeline: Pipeline, tmp_path: Path, feed: EventTimeFeed, speed: float) -> RunResult:
    """Paced; the worker stopped for ``OUTAGE_WINDOWS`` windows of event time while the feed keeps coming,
    then a new worker on the same topics catches up while the rest arrives."""
    before, rest = split_at_minute(feed, OUTAGE_START_MIN)
    during, after = split_at_minute(EventTimeFeed(rest, feed.late_ids), OUTAGE_START_MIN + OUTAGE_WINDOWS)
    first = pipeline(**DETECTOR)
    s = first.settings
    replay(s, write_lines(tmp_path / "before.jsonl", before), speed)
    first.stop()  # SIGTERM: what was read is delivered and committed; the rest waits on the topics
    replay(s, write_lines(tmp_path / "during.jsonl", during), speed)
    second = pipeline(kafka__topic_prefix=s.kafka.topic_prefix, **DETECTOR)
    replay(s, write_lines(tmp_path / "after.jsonl", after), speed)
    drain(s, [second], feed.lines)
    result = outcome(s)
    second.stop()
    return result


def _committed_inputs(s: Settings) -> int:
    """Input records the score stage has committed (the replay's producer writes no transaction markers)."""
    admin = KafkaAdminClient(**client_config(s.kafka))
    try:
        offsets = admin.list_consumer_group_offsets(s.kafka.score_group_id)
    finally:
        admin.close()
    inputs = {s.kafka.topic(t) for t in INPUTS}
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic in inputs and meta.offset > 0)


def _freeze_ahead_of_commits(worker: Worker, s: Settings, tries: int = 40) -> bool:
    """SIGSTOP the worker at moments until its scored records outnumber its committed inputs: outputs whose
    offsets are not committed, the records a crash would have counted twice at-least-once. Never true with
    exactly-once; the worker is left stopped either way."""
    for _ in range(tries):
        os.kill(worker.proc.pid, signal.SIGSTOP)
        if count_records(s.kafka, s.kafka.topic("scored")) > _committed_inputs(s):
            return True
        os.kill(worker.proc.pid, signal.SIGCONT)
        time.sleep(random.uniform(0.01, 0.1))
    os.kill(worker.proc.pid, signal.SIGSTOP)
    return False


def run_killed(pipeline: Pipeline, tmp_path: Path, lines: list[str]) -> RunResult:
    """Unpaced; the worker killed with -9 midway (once a quarter of the feed is scored, at a moment its outputs
    may be ahead of its commits), then a new one on the same topics with the same transactional id, as a
    restarted pod keeps its name: its predecessor's open transaction is aborted."""
    crash = {**DETECTOR, "kafka__session_timeout_s": 10, "kafka__transactional_id": f"kill-{uuid.uuid4().hex[:8]}"}
    first = pipeline(**crash)
    s = first.settings
    replay(s, write_lines(tmp_path / "feed.jsonl", lines), None)
    deadline = time.monotonic() + 120
    while (scored := count_records(s.kafka, s.kafka.topic("scored"))) < len(lines) // 4:
        assert first.alive() and time.monotonic() < deadline, first.log_tail()
        time.sleep(0.1)
    ahead = _freeze_ahead_of_commits(first, s)
    first.kill()
    print(f"\nkill -9 after {scored}+ of {len(lines)} messages scored; outputs ahead of commits: {ahead}")
    assert scored < len(lines), "the worker finished the feed before it was killed: nothing was tested"
    second = pipeline(kafka__topic_prefix=s.kafka.topic_prefix, **crash)
    drain(s, [second], lines)
    result = outcome(s)
    second.stop()
    ids = [r["id"] for r in read_json(s.kafka, s.kafka.topic("scored"))]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} messages scored twice across the crash"
    # a window closed just before the kill may be sent again by the next worker: the same window, once more
    return replace(result, windows=sorted(set(result.windows)))


def assert_same(got: RunResult, paced: RunResult, mode: str) -> None:
    """Equal, or say what differs (whole lists of hundreds of windows tell nothing)."""
    for name in ("windows", "alerts", "late_ids"):
        mine, theirs = getattr(got, name), getattr(paced, name)
        only_mine = sorted(set(mine) - set(theirs))[:10]
        only_paced = sorted(set(theirs) - set(mine))[:10]
        assert mine == theirs, (f"{mode}: {name} differ from the paced run's ({len(mine)} vs {len(theirs)}); "
                                f"only {mode}: {only_mine}; only paced: {only_paced}")


_PACED: dict[str, RunResult] = {}  # per feed: the paced run every other mode is compared with, run once


def paced(name: str, run: Callable[[], RunResult]) -> RunResult:
    if name not in _PACED:
        _PACED[name] = run()
    return _PACED[name]


@pytest.fixture(scope="module")
def feed() -> EventTimeFeed:
    return build_event_time_feed()


def test_generated_feed_paced_alerts_on_both_surges_and_dead_letters_exactly_the_late_messages(
    pipeline: Pipeline, tmp_path: Path, feed: EventTimeFeed
) -> None:
    base = paced("generated", lambda: run_once(pipeline, tmp_path, feed.lines, GENERATED_SPEED))
    assert {surge.ticker for surge in feed.surges} <= base.firing("ticker"), base.alerts
    assert SPIKE_TICKER not in base.firing("ticker"), base.alerts  # a one-minute spike is no surge
    assert base.late_ids == feed.late_ids
    assert sum(1 for w in base.windows if w[0] == "ticker") >= len(COMPANIES) * (MINUTES - 5), base.windows
    closing_min = (DETECTOR["detector__window_s"] + DETECTOR["detector__allowed_lateness_s"]) // 60
    for surge in feed.surges:  # each closed surge window holds all its extra messages: none cut, none late
        counts = {start: n for dim, key, start, n, _ in base.windows if (dim, key) == ("ticker", surge.ticker)}
        closed = surge.window_starts(before_min=MINUTES - closing_min)
        assert closed and all(counts.get(start, 0) >= SURGE_EXTRA_PER_MINUTE for start in closed), (surge, counts)


def forged_future(lines: list[str]) -> list[str]:
    """The feed with one message stamped five days ahead, sent first: it must blind nothing."""
    ts = (datetime.now(UTC) + timedelta(days=5)).isoformat().replace("+00:00", "Z")
    forged = json.dumps({"id": "forged-future", "source": "news", "ts": ts, "text": "$BA and $NFLX soar", "tickers":
                         ["BA", "NFLX"]})
    return [forged, *lines]


@pytest.mark.parametrize("mode", ["unpaced", "two-workers", "outage", "forged-future", "kill-9"])
def test_generated_feed_gives_the_paced_outcome(
    pipeline: Pipeline, tmp_path: Path, feed: EventTimeFeed, mode: str
) -> None:
    (tmp_path / "paced").mkdir()
    base = paced("generated", lambda: run_once(pipeline, tmp_path / "paced", feed.lines, GENERATED_SPEED))
    if mode == "outage":
        got = run_outage(pipeline, tmp_path, feed, GENERATED_SPEED)
    elif mode == "forged-future":  # refused as invalid (more than scoring.max_future_s ahead), not late
        got = run_once(pipeline, tmp_path, forged_future(feed.lines), None)
    elif mode == "kill-9":
        got = run_killed(pipeline, tmp_path, feed.lines)
    else:
        got = run_once(pipeline, tmp_path, feed.lines, None, workers=2 if mode == "two-workers" else 1)
    assert_same(got, base, mode)
    assert {surge.ticker for surge in feed.surges} <= got.firing("ticker")


@pytest.fixture(scope="module")
def demo_lines() -> list[str]:
    return DEMO_FEED.read_text(encoding="utf-8").splitlines()


def test_demo_feed_unpaced_gives_the_paced_outcome_and_the_tsla_alert(
    pipeline: Pipeline, tmp_path: Path, demo_lines: list[str]
) -> None:
    (tmp_path / "paced").mkdir()
    base = paced("demo", lambda: run_once(pipeline, tmp_path / "paced", demo_lines, DEMO_SPEED))
    got = run_once(pipeline, tmp_path, demo_lines, None)
    assert_same(got, base, "unpaced")
    assert "TSLA" in got.firing("ticker"), got.alerts
    assert got.late_ids == []  # the demo feed runs forward in event time
