"""``tonewatch sink`` end to end on a real Kafka broker and a real PostgreSQL: hand-made records of every topic
land once; a second sink from the beginning (a new consumer group, the same database) adds nothing; a malformed
record is dead-lettered."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka.errors import KafkaError
from pydantic import SecretStr

from tests.integration.postgres import running_postgres
from tonewatch.core.kafka_io import ensure_topics, group_lag, producer, read_json
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INCIDENTS
from tonewatch.store.sink import TOPIC_KINDS, create_sink_metrics, run_sink

REPO = Path(__file__).resolve().parents[2]
TABLES = {"trends": "trends", "alerts": "alerts", "incidents": "incidents", "messages": "scored",
          "model_events": "model_events"}
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from tonewatch.stack.kafka import start_kafka, stop_kafka

    run_dir = tmp_path_factory.mktemp("sink")
    settings = Settings().updated(run_dir=REPO / ".tonewatch")
    kafka = start_kafka(settings, run_dir / "kafka")
    try:
        with running_postgres(run_dir / "postgres") as pg:
            yield settings.updated(kafka__bootstrap=kafka.bootstrap, run_dir=run_dir,
                                   store__dsn=SecretStr(pg.dsn), store__metrics_port=0, store__batch_timeout_s=0.3)
    finally:
        stop_kafka(kafka)


def _records(now: datetime) -> dict[str, list[bytes]]:
    at = now.replace(microsecond=0)
    start, end = (at - timedelta(minutes=1)).isoformat(), at.isoformat()
    alert = {"id": "a-1", "status": "firing", "dimension": "ticker", "key": "TSLA", "severity": "critical",
             "reason": "both", "score": 6.5, "window": {"start": start, "end": end},
             "top_messages": [{"text": "TSLA plunges", "message_id": "m-1"}]}
    docs: dict[str, list[Any]] = {
        "trends": [{"dimension": "ticker", "key": k, "window_start": start, "window_end": end, "count": 10,
                    "negative": 7, "negative_share": 0.7, "baseline": 0.1, "z": 5.0} for k in ("TSLA", "AAPL")],
        "alerts": [alert, {**alert, "status": "resolved"}],
        INCIDENTS: [{"id": "i-1", "version": 1, "severity": "critical", "status": "opened",
                     "window": {"start": start, "end": end}, "children": [alert]}],
        "scored": [{"id": f"m-{i}", "ts": end, "source": "news", "text": f"TSLA plunges on recall {i}",
                    "sentiment": "negative", "sentiment_probs": {"negative": 0.9, "neutral": 0.05, "positive": 0.05},
                    "topic": "Product", "tickers": ["TSLA"], "model_versions": {"sentiment": "1"}} for i in (1, 2)],
        "model-events": [{"model": "sentiment", "version": 2, "event": "promoted", "at": end}],
    }
    out = {topic: [json.dumps(d).encode() for d in ds] for topic, ds in docs.items()}
    out["trends"].append(b"{oops")  # not JSON
    out["alerts"].append(json.dumps({"id": "a-2"}).encode())  # no status, no window
    return out


def _counts(settings: Settings) -> dict[str, int]:
    assert settings.store.dsn is not None
    with psycopg.connect(settings.store.dsn.get_secret_value()) as conn:
        return {kind: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
                for table, kind in TABLES.items()}


def _behind(settings: Settings, group: str) -> bool:
    try:
        return any(group_lag(settings.kafka, settings.kafka.topic(t), group) for t in TOPIC_KINDS)
    except KafkaError:  # the group coordinator is not up yet on a fresh broker
        return True


def _sink_until_caught_up(settings: Settings, timeout_s: float = 40.0) -> float:
    """Runs the sink in a thread until its group has committed every topic to the end; its rows written."""
    metrics, stop = create_sink_metrics(), threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_sink(settings, metrics, stop.is_set)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    group = settings.kafka.sink_group_id
    deadline = time.monotonic() + timeout_s
    try:
        while _behind(settings, group):
            assert not errors, errors
            assert time.monotonic() < deadline, "the sink did not catch up"
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive() and not errors, errors
    return sum(metrics.registry.get_sample_value("tonewatch_sink_rows_total", {"kind": k}) or 0
               for k in TOPIC_KINDS.values())


def _cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *args: str) -> list[str]:
    from typer.testing import CliRunner

    from tonewatch.cli import app

    assert settings.store.dsn is not None
    monkeypatch.setenv("TONEWATCH_STORE__DSN", settings.store.dsn.get_secret_value())
    out = CliRunner().invoke(app, list(args))
    assert out.exit_code == 0, out.output
    return out.output.splitlines()


def test_records_land_once_and_a_replay_changes_nothing(base: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = base.updated(kafka__topic_prefix=f"s{uuid.uuid4().hex[:10]}")
    ensure_topics(settings.kafka, [settings.kafka.topic(t) for t in [*TOPIC_KINDS, "dead-letter"]])
    p = producer(settings.kafka)
    for topic, values in _records(datetime.now(UTC)).items():
        for i, v in enumerate(values):  # keyed: the incidents topic is compacted
            p.send(settings.kafka.topic(topic), v, key=f"{topic}-{i}".encode())
    p.flush()
    p.close()

    assert _sink_until_caught_up(settings) == 8
    expected = {"trends": 2, "alerts": 2, "incidents": 1, "scored": 2, "model_events": 1}
    assert _counts(settings) == expected
    dead = read_json(settings.kafka, settings.kafka.topic("dead-letter"))
    assert sorted((d["topic"].rsplit(".", 1)[1], d["stage"]) for d in dead) == [("alerts", "sink"), ("trends", "sink")]
    assert any("not JSON" in d["reason"] for d in dead) and any("status" in d["reason"] for d in dead)

    assert len(_cli(monkeypatch, settings, "trends", "tsla", "--json")) == 1
    history = _cli(monkeypatch, settings, "alerts", "history", "--key", "TSLA", "--since", "1h")
    assert history[0].split()[:3] == ["window_start", "status", "severity"] and len(history) == 3
    found = [json.loads(line) for line in _cli(monkeypatch, settings, "messages", "search", "recall", "--ticker",
                                                "TSLA", "--json")]
    assert sorted(m["id"] for m in found) == ["m-1", "m-2"]

    # from the beginning again, as a new consumer group on the same database: every row is already there
    again = settings.updated(kafka__app_id=f"{settings.kafka.app_id}-replay")
    assert _sink_until_caught_up(again) == 0
    assert _counts(settings) == expected
