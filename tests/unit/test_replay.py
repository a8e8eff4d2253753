"""``tonewatch replay``'s pure parts: event-time pacing, the wait for the worker, the summary line; and the
command's refusals and exit codes (with the Kafka calls replaced)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import CoordinatorNotAvailableError
from kafka.structs import OffsetAndMetadata, TopicPartition
from typer.testing import CliRunner

from tests.fakes import FakeClock
from tonewatch import replay as rp
from tonewatch.cli import app
from tonewatch.core.settings import Settings
from tonewatch.replay import (
    CatchUp,
    Outcome,
    ReplayReport,
    behind,
    count_messages,
    format_sent,
    format_summary,
    format_timeout,
    pacing_delay,
    stage_counts,
    wait_until_caught_up,
)

T0 = 1_767_621_600_000  # 2026-01-05T14:00:00Z in ms


def test_unpaced_or_without_event_time_is_never_delayed() -> None:
    assert pacing_delay(T0 + 3_600_000, T0, None, 0.0) == 0.0
    assert pacing_delay(T0 + 3_600_000, T0, 0, 0.0) == 0.0
    assert pacing_delay(None, T0, 60, 0.0) == 0.0
    assert pacing_delay(T0, None, 60, 0.0) == 0.0


def test_paced_delay_is_event_time_offset_over_speed_less_time_spent() -> None:
    assert pacing_delay(T0, T0, 60, 0.0) == 0.0  # the first message goes at once
    assert pacing_delay(T0 + 60_000, T0, 60, 0.0) == pytest.approx(1.0)  # a minute of feed in a second
    assert pacing_delay(T0 + 60_000, T0, 60, 0.25) == pytest.approx(0.75)
    assert pacing_delay(T0 + 3_600_000, T0, 120, 10.0) == pytest.approx(20.0)


def test_behind_the_pace_or_late_messages_go_at_once() -> None:
    assert pacing_delay(T0 + 60_000, T0, 60, 5.0) == 0.0
    assert pacing_delay(T0 - 1_800_000, T0, 60, 0.0) == 0.0  # 30 minutes older than the first message


def test_count_messages_counts_non_blank_lines(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b'{"id": 1}\n\n  \n{"id": 2}\r\nnot json\n')
    assert count_messages(feed) == 3


def test_wait_returns_at_once_when_nothing_lags() -> None:
    clock = FakeClock()
    lag = wait_until_caught_up(lambda: {"news": 0, "chat": 0, "trend-events": 0}, 300, clock=clock, sleep=clock.sleep)
    assert lag == {"news": 0, "chat": 0, "trend-events": 0} and clock.slept == []


def test_wait_polls_until_every_topic_is_caught_up() -> None:
    clock = FakeClock()
    lags = iter([{"news": 5, "trend-events": 9}, {"news": 0, "trend-events": 3}, {"news": 0, "trend-events": 0}])
    lag = wait_until_caught_up(lambda: next(lags), 300, interval_s=1.0, clock=clock, sleep=clock.sleep)
    assert not any(lag.values()) and clock.slept == [1.0, 1.0]


def test_wait_gives_up_at_the_timeout_with_the_last_lag() -> None:
    clock = FakeClock()
    lag = wait_until_caught_up(lambda: {"news": 4, "trend-events": 0}, 2.5, interval_s=1.0, clock=clock,
                               sleep=clock.sleep)
    assert lag == {"news": 4, "trend-events": 0}
    assert clock.slept == [1.0, 1.0, 0.5] and clock.now == 2.5  # never sleeps past the deadline


def test_behind_counts_only_up_to_the_targets() -> None:
    a, b = TopicPartition("t.news", 0), TopicPartition("t.news", 1)
    assert behind({a: 10, b: 5}, {a: 4, b: 5}) == 6
    assert behind({a: 10, b: 5}, {a: 12}) == 5  # past the target counts as done; no commit as none
    assert behind({a: 10}, {a: -1}) == 10  # kafka-python's "no offset committed"
    assert behind({}, {a: 3}) == 0


class FakeOffsets:
    """The broker as CatchUp sees it: end offsets (that the test moves on) and the groups' commits."""

    def __init__(self) -> None:
        self.ends: dict[TopicPartition, int] = {}
        self.commits: dict[str, dict[TopicPartition, int]] = {}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.ends if tp.topic == topic}

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    def list_consumer_group_offsets(self, group: str, partitions: list[TopicPartition]
                                    ) -> dict[TopicPartition, OffsetAndMetadata]:
        done = self.commits.get(group, {})
        return {tp: OffsetAndMetadata(done.get(tp, -1), "", -1) for tp in partitions}


def test_catch_up_waits_for_the_trend_events_the_inputs_led_to_not_for_later_marks() -> None:
    s = Settings().updated(kafka__topic_prefix="t")
    news, chat, trends = TopicPartition("t.news", 0), TopicPartition("t.chat", 0), TopicPartition("t.trend-events", 0)
    score, windows = s.kafka.score_group_id, s.kafka.group_id
    kafka = FakeOffsets()
    kafka.ends = {news: 8, chat: 2, trends: 3}
    left = CatchUp(s, kafka, kafka)
    kafka.ends[news] = 9  # sent by someone else after this replay: not waited for
    assert left() == {"news": 8, "chat": 2, "trend-events": 3}
    kafka.commits = {score: {news: 8, chat: 2}}
    kafka.ends[trends] = 6  # the replay's trend events: the target now the inputs are done
    assert left() == {"news": 0, "chat": 0, "trend-events": 6}
    kafka.ends[trends] = 50  # the score stage's periodic marks keep coming
    kafka.commits[windows] = {trends: 6}
    assert left() == {"news": 0, "chat": 0, "trend-events": 0}


class CoordinatorStarting(FakeOffsets):
    """A fresh broker: the group coordinator is not there for the first few questions."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def list_consumer_group_offsets(self, group: str, partitions: list[TopicPartition]
                                    ) -> dict[TopicPartition, OffsetAndMetadata]:
        if self.refusals:
            self.refusals -= 1
            raise CoordinatorNotAvailableError("The coordinator is not available.")
        return super().list_consumer_group_offsets(group, partitions)


def test_a_coordinator_not_there_yet_means_not_caught_up_yet_not_a_crash() -> None:
    s = Settings().updated(kafka__topic_prefix="t")
    news, trends = TopicPartition("t.news", 0), TopicPartition("t.trend-events", 0)
    kafka = CoordinatorStarting(refusals=2)
    kafka.ends = {news: 5, trends: 0}
    kafka.commits = {s.kafka.score_group_id: {news: 5}}
    left = CatchUp(s, kafka, kafka)
    assert left()["news"] == 5  # nothing known to be committed: all of it still to do
    assert left() == {"news": 0, "chat": 0, "trend-events": 0}


def test_stage_counts_reads_the_stage_field() -> None:
    values = [json.dumps({"stage": s, "reason": "r"}).encode() for s in ("validate", "late", "late", "windows")]
    values += [b"not json", b"\xff", json.dumps(["a list"]).encode(), json.dumps({"reason": "no stage"}).encode()]
    assert stage_counts(values) == {"?": 4, "late": 2, "validate": 1, "windows": 1}
    assert list(stage_counts(values)) == ["?", "late", "validate", "windows"]  # name order


def test_summary_line() -> None:
    report = ReplayReport(1126, {"tonewatch.news": 701, "tonewatch.chat": 425})
    assert format_sent(report, "tonewatch") == "sent 1126 messages (news=701, chat=425)"
    assert format_sent(ReplayReport(), "tonewatch") == "sent 0 messages"
    assert format_sent(ReplayReport(1, {"tonewatch.chat": 1}), "tonewatch") == "sent 1 message (chat=1)"
    outcome = Outcome(1120, {"late": 3, "validate": 3})
    assert outcome.dead == 6
    assert format_summary(report, "tonewatch", outcome) == (
        "sent 1126 messages (news=701, chat=425), scored 1120, dead-lettered 6 (late=3, validate=3)")
    assert format_summary(report, "tonewatch", Outcome(1126, {})).endswith("scored 1126, dead-lettered 0")


def test_timeout_line_names_what_is_still_waiting() -> None:
    so_far = "sent 3 messages, scored 1, dead-lettered 0"
    text = format_timeout(300, {"news": 12, "chat": 0, "trend-events": 40}, so_far)
    assert text.startswith("the pipeline has not caught up after 300s (not yet processed: news=12, chat=0, "
                           "trend-events=40;")
    assert text.endswith("so far: sent 3 messages, scored 1, dead-lettered 0")


# --- the command, with the Kafka calls replaced ---------------------------------------------------------------------

ENV = {"TONEWATCH_KAFKA__BOOTSTRAP": "127.0.0.1:9", "TONEWATCH_KAFKA__TOPIC_PREFIX": "t"}


@pytest.fixture
def feed(tmp_path: Path) -> Path:
    path = tmp_path / "feed.jsonl"
    path.write_text('{"id": "a", "source": "news", "ts": "2026-01-05T14:00:00Z", "text": "x"}\n')
    return path


@pytest.mark.parametrize("args", [["--speed", "60", "--as-fast-as-possible"], ["--speed", "0"], ["--speed", "-2"]])
def test_refuses_contradictory_or_non_positive_speed_before_contacting_kafka(feed: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["replay", str(feed), *args], env=ENV)
    assert result.exit_code == 2, result.output
    assert "--speed" in result.output


def _fake_kafka(monkeypatch: pytest.MonkeyPatch, lag: dict[str, int]) -> list[Any]:
    calls: list[Any] = []

    def fake_replay(settings: Any, path: Path, speed: float | None = None, **kw: Any) -> ReplayReport:
        calls.append(speed)
        kw["progress"](1)
        return ReplayReport(1, {"t.news": 1})

    monkeypatch.setattr(rp, "output_marks", lambda settings: {})
    monkeypatch.setattr(rp, "replay", fake_replay)
    monkeypatch.setattr(rp, "wait_for_pipeline", lambda settings, timeout_s: lag)
    monkeypatch.setattr(rp, "outputs_since", lambda settings, marks: Outcome(1, {}))
    return calls


def test_waits_and_prints_one_summary_line(feed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_kafka(monkeypatch, {"news": 0, "chat": 0, "trend-events": 0})
    result = CliRunner().invoke(app, ["replay", str(feed), "--as-fast-as-possible"], env=ENV)
    assert result.exit_code == 0, result.output
    assert result.stdout == "sent 1 message (news=1), scored 1, dead-lettered 0\n"  # no progress bar off a TTY
    assert calls == [None]


def test_exits_1_when_the_worker_does_not_catch_up(feed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kafka(monkeypatch, {"news": 1, "chat": 0, "trend-events": 0})
    result = CliRunner().invoke(app, ["replay", str(feed), "--speed", "60", "--wait-timeout", "5"], env=ENV)
    assert result.exit_code == 1
    assert "error: the pipeline has not caught up after 5s (not yet processed: news=1" in result.stderr


def test_no_wait_prints_what_was_sent(feed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kafka(monkeypatch, {"news": 1})
    monkeypatch.setattr(rp, "wait_for_pipeline", lambda settings, timeout_s: pytest.fail("waited"))
    result = CliRunner().invoke(app, ["replay", str(feed), "--no-wait"], env=ENV)
    assert result.exit_code == 0 and result.stdout == "sent 1 message (news=1)\n"
