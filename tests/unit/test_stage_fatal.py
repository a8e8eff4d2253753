"""A score stage that cannot start stops the worker with one line naming the cause (#27, 6), not silently.

The stage is built from its real collaborators around fakes of Kafka and Triton, passed in through their
constructors; ``on_fatal`` is what the worker hands it (``streams.app.Shutdown``). Triton's start-up wait is
checked against a closed local port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest

from streams.control.drift_tracker import DriftTracker
from streams.knowledge import load_knowledge
from streams.metrics import create_metrics
from streams.score.aligner import Aligner
from streams.score.clock import PartitionClock
from streams.score.committer import Committer
from streams.score.dedup import RecentIds
from streams.score.publisher import Publisher
from streams.score.scorer import Scorer
from streams.score.stage import ScoreStage
from streams.score.triton_client import TritonScorer
from tests.unit.kafka_fakes import FakeProducer
from tests.unit.test_score_stage import FakeFollower, FakeReader, FakeTriton
from tonewatch.core.errors import TritonError
from tonewatch.core.settings import Settings

DOWN = "Triton at 127.0.0.1:9 did not serve sentiment, topic within 5 s: connection refused"


class RefusingTriton(FakeTriton):
    async def start(self) -> None:
        raise TritonError(DOWN)


class BrokenFollower(FakeFollower):
    async def start(self) -> None:
        raise RuntimeError("model-events: not authorized")


def _stage(triton: Any, follower: Any = None, on_fatal: Any = None) -> ScoreStage:
    settings = Settings()
    metrics = create_metrics()
    reader = FakeReader()
    scorer = Scorer(triton, follower or FakeFollower(), (settings.triton.sentiment_model, settings.triton.topic_model),
                    load_knowledge(), metrics, settings.scoring.max_tickers)
    publisher = Publisher(settings, metrics, DriftTracker(settings, metrics), producer=FakeProducer)
    clock = PartitionClock(settings.detector.allowed_lateness_s, settings.detector.idle_s)
    given = {"on_fatal": on_fatal} if on_fatal else {}  # without one: the stage's default
    return ScoreStage(reader, Aligner(reader), scorer, publisher, Committer(reader, 2), RecentIds(100), metrics, clock,
                      **given)


def _fatal_reasons(triton: Any, follower: Any = None, step: Any = None) -> list[str]:
    """Start the stage as the app does (with ``step`` in place of its own) and collect what it hands
    ``on_fatal``, then stop it."""
    async def run() -> list[str]:
        reasons: list[str] = []
        called = asyncio.Event()

        def on_fatal(reason: str) -> None:
            reasons.append(reason)
            called.set()

        stage = _stage(triton, follower, on_fatal)
        if step is not None:
            stage.step = step  # type: ignore[method-assign]
        await stage.start()
        await asyncio.wait_for(called.wait(), timeout=5)
        await stage.stop()
        return reasons

    return asyncio.run(run())


def _loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records above DEBUG that carry a traceback, and every ERROR record: what a failed start must not print."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR or (r.exc_info and r.levelno > logging.DEBUG)]


def test_a_triton_that_never_comes_up_stops_the_worker_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert _fatal_reasons(RefusingTriton()) == [f"score stage could not start: TritonError: {DOWN}"]
    assert _loud(caplog) == []


def test_a_failing_model_events_follower_stops_the_worker_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reasons = _fatal_reasons(FakeTriton(), BrokenFollower())
    assert reasons == ["score stage could not start: RuntimeError: model-events: not authorized"]
    assert _loud(caplog) == []


def test_without_on_fatal_the_failure_crashes_the_service_so_any_worker_exits() -> None:
    """mode's own path (exit 1, with its traceback) rather than a task whose exception nobody reads."""
    async def run() -> BaseException | None:
        stage = _stage(RefusingTriton())
        await stage.start()
        for _ in range(100):
            if stage.crashed:
                break
            await asyncio.sleep(0.05)
        reason = stage.crash_reason
        await stage.stop()
        return reason

    reason = asyncio.run(run())
    assert isinstance(reason, TritonError) and str(reason) == DOWN


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_triton_start_waits_its_timeout_then_names_the_cause(caplog: pytest.LogCaptureFixture) -> None:
    """One INFO line when the wait begins (then at most one a minute), and after the wait an error that says
    where, what and which setting; never a silent forever."""
    caplog.set_level(logging.INFO, logger="streams.score.triton_client")
    url = f"127.0.0.1:{_closed_port()}"
    triton = TritonScorer(url, ["sentiment", "topic"], 1.0, startup_timeout_s=2.5)

    async def run() -> None:
        try:
            await triton.start()
        finally:
            await triton.close()

    t0 = time.monotonic()
    with pytest.raises(TritonError) as raised:
        asyncio.run(run())
    assert 2.5 <= time.monotonic() - t0 < 10
    text = str(raised.value)
    assert text.startswith(f"Triton at {url} did not serve sentiment, topic within 2.5 s"), text
    assert "TONEWATCH_TRITON__STARTUP_TIMEOUT_S" in text and "\n" not in text
    waiting = [r for r in caplog.records if r.name == "streams.score.triton_client"]
    assert len(waiting) == 1 and waiting[0].levelno == logging.INFO, [r.getMessage() for r in waiting]
    assert waiting[0].getMessage().startswith(f"waiting for Triton at {url}")


def test_a_broker_refusing_the_records_for_good_stops_the_worker_instead_of_retrying() -> None:
    """The loop retries a broker hiccup; a producer refused three times in a row (ACLs, record size) is fatal."""
    from streams.score.publisher import ProduceRefused

    async def refused() -> None:
        raise ProduceRefused("the broker refuses this worker's records (TopicAuthorizationFailedError)")

    assert _fatal_reasons(FakeTriton(), step=refused) == [
        "score stage failed: ProduceRefused: the broker refuses this worker's records (TopicAuthorizationFailedError)"]
