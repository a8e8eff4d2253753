"""The sink's faults (issue #30) on its OWN real Kafka and PostgreSQL, which it may stop: ``tonewatch sink`` killed
with -9 in the middle of a backlog, and PostgreSQL stopped for 30 s while records keep arriving. After each, every
table holds exactly the rows of the records produced (their natural keys, each once), nothing dead-lettered."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from streams.control.routing import ModelEvent
from streams.records import Scored
from streams.windows.alerts import alert_payload
from streams.windows.detector import ClosedWindow, Driver, Transition, Window, alert_id
from streams.windows.trends import trend_record
from tests.integration.store_checks import assert_volume_counts_each_message_once
from tonewatch.core.kafka_io import READER, client_config, ensure_topics, producer, topic_size
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INCIDENTS
from tonewatch.notify.incidents import group_alerts
from tonewatch.stack import worker_env
from tonewatch.stack.kafka import KafkaProcess, start_kafka, stop_kafka
from tonewatch.stack.postgres import PostgresProcess, start_postgres
from tonewatch.stack.procs import alive, free_port, spawn, stop
from tonewatch.store.rows import to_row
from tonewatch.store.sink import TOPIC_KINDS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WINDOW_S = 60
TICKERS = ("AAPL", "TSLA", "MSFT", "NVDA")
# per row kind: its table, and its natural key (tonewatch/store/migrations), which is the first columns of its row
KEYS = {"trends": ("trends", "dimension, key, window_start", 3), "alerts": ("alerts", "alert_id, status", 2),
        "incidents": ("incidents", "incident_id, version", 2), "scored": ("messages", "id, ts", 2),
        "model_events": ("model_events", "event_key", 1)}
Keys = dict[str, Counter[tuple[Any, ...]]]


@dataclass
class Stores:
    settings: Settings
    kafka: KafkaProcess
    pg: PostgresProcess  # replaced when a test restarts it


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    run_dir = tmp_path_factory.mktemp("sink-faults")
    base = Settings().updated(run_dir=REPO / ".tonewatch")  # the Kafka jars cached there
    kafka = start_kafka(base, run_dir / "kafka")
    try:
        held = Stores(base.updated(kafka__bootstrap=kafka.bootstrap, run_dir=run_dir), kafka,
                      start_postgres(run_dir / "postgres"))
    except BaseException:
        stop_kafka(kafka)
        raise
    yield held
    stop(held.pg.pid, timeout_s=5)  # a sink left connected would hold its smart shutdown for long
    stop_kafka(held.kafka)


def _fresh(stores: Stores) -> Settings:
    """Own topics (so an own consumer group) and an own database; small batches: many transactions to land in."""
    name = f"s{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stores.pg.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    settings = stores.settings.updated(
        kafka__topic_prefix=name, store__dsn=SecretStr(f"{stores.pg.dsn.rsplit('/', 1)[0]}/{name}"),
        store__metrics_port=free_port(), store__batch_records=25, store__batch_timeout_s=0.2,
        kafka__session_timeout_s=10,  # a killed sink's partitions move to its successor after this
    )
    topics = [settings.kafka.topic(t) for t in [*TOPIC_KINDS, "dead-letter"]]
    ensure_topics(settings.kafka, topics)
    admin = KafkaAdminClient(**client_config(settings.kafka))
    try:  # leaders elected before the first send: the producer's 5 quick retries may not outlast the elections
        for _ in range(60):
            parts = [p for t in admin.describe_topics(topics) for p in t["partitions"]]
            if len(parts) == len(topics) * settings.kafka.topic_partitions and min(p["leader"] for p in parts) >= 0:
                break
            time.sleep(0.5)
    finally:
        admin.close()
    return settings


# --- records, built by the functions that publish them ---------------------------------------------------------
def _scored(tag: str, i: int, ts: datetime) -> dict[str, Any]:
    ticker, p = TICKERS[i % len(TICKERS)], 0.9 if i % 3 == 0 else 0.2
    sc = Scored(id=f"{tag}-m{i}", source="news", ts=ts, text=f"{ticker} shares slide after a recall ({tag} {i})",
                tickers=(ticker,), sentiment="negative" if p > 0.5 else "neutral",
                sentiment_probs={"negative": p, "neutral": round(1 - p, 6), "positive": 0.0}, topic="Product",
                topic_probs={"Product": 1.0}, model_versions={"sentiment": "1"}, scored_at=ts, inference_ms=1.0)
    return dict(json.loads(sc.to_json()))


def _alert(key: str, start: float, status: str) -> dict[str, Any]:
    w = Window(start=start, count=12, negative=9, p_negative_sum=8.0, adjusted_sum=9.0,
               drivers=(Driver(f"{key}-m", f"{key} recall", "news", 0.95, (key,)),))
    t = Transition(status, alert_id("ticker", key, start), w, baseline=0.1, score=5.5,  # type: ignore[arg-type]
                   severity="critical", reason="share")
    return dict(json.loads(json.dumps(alert_payload(t, "ticker", key, WINDOW_S, 30))))


def _backlog(tag: str, scored: int, start: datetime) -> dict[str, list[dict[str, Any]]]:
    """Records of the five topics, scored ones dominating; ``tag`` and ``start`` keep each call's keys its own.
    Event times are recent: the sink's retention drops older days' messages."""
    t0 = start.timestamp() // WINDOW_S * WINDOW_S
    windows = [t0 + k * WINDOW_S for k in range(max(scored // 100, 1))]
    firing = [_alert(key, w, "firing") for key in TICKERS for w in windows[::5]]
    incidents = group_alerts(firing, gap_s=300, sectors={})
    return {
        "scored": [_scored(tag, i, start + timedelta(milliseconds=10 * i)) for i in range(scored)],
        "trends": [trend_record("ticker", key, ClosedWindow(Window(start=w, count=10, negative=i % 10,
                                                                   p_negative_sum=0.5 * (i % 10)),
                                                            baseline=0.1, alerting=False), WINDOW_S)
                   for i, (key, w) in enumerate((k, w) for k in TICKERS for w in windows)],
        "alerts": firing + [{**a, "status": "resolved"} for a in firing[::2]],
        INCIDENTS: incidents + [{**i, "version": 2, "status": "updated"} for i in incidents],
        "model-events": [ModelEvent.from_dict({"model": "sentiment", "version": v, "event": "promoted",
                                               "at": (start + timedelta(seconds=v)).isoformat()}).to_dict()
                         for v in range(1, 4)],
    }


def _produce(settings: Settings, backlog: dict[str, list[dict[str, Any]]]) -> Keys:
    """Sends every record and waits for the broker's acknowledgements; the keys the tables must then hold."""
    p = producer(settings.kafka)
    try:
        futures = [p.send(settings.kafka.topic(topic), json.dumps(rec).encode(), key=f"{topic}-{n}".encode())
                   for topic, recs in backlog.items() for n, rec in enumerate(recs)]
        p.flush(timeout=60)
        for fut in futures:
            fut.get(timeout=30)
    finally:
        p.close()
    expected: Keys = {kind: Counter() for kind in KEYS}
    for topic, recs in backlog.items():
        kind = TOPIC_KINDS[topic]
        expected[kind].update(to_row(kind, r)[:KEYS[kind][2]] for r in recs)
    assert all(n == 1 for k in expected.values() for n in k.values()), "the backlog repeats a key"
    return expected


# --- what the sink did ------------------------------------------------------------------------------------------
def _stored(settings: Settings) -> Keys:
    """The keys each table holds, with how often: a missing table (not migrated yet) holds none."""
    assert settings.store.dsn is not None
    out: Keys = {kind: Counter() for kind in KEYS}
    with psycopg.connect(settings.store.dsn.get_secret_value(), connect_timeout=5) as c:
        for kind, (table, columns, _) in KEYS.items():
            try:
                out[kind] = Counter(c.execute(f"SELECT {columns} FROM {table}").fetchall())
            except psycopg.errors.UndefinedTable:
                c.rollback()
    return out


def _landed(settings: Settings) -> int:
    return sum(sum(k.values()) for k in _stored(settings).values())


def _lag(settings: Settings) -> int | None:
    """Records the sink's group has not committed yet, over its five topics; None while that cannot be told."""
    conf = client_config(settings.kafka)
    admin, consumer = KafkaAdminClient(**conf), KafkaConsumer(**conf, **READER, group_id=None)
    try:
        committed = admin.list_consumer_group_offsets(settings.kafka.sink_group_id)
        tps = [TopicPartition(settings.kafka.topic(t), p) for t in TOPIC_KINDS
               for p in consumer.partitions_for_topic(settings.kafka.topic(t))]
        ends = consumer.end_offsets(tps)  # read after the commits: never less than the lag
        return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())
    except KafkaError:  # the group's coordinator not ready yet
        return None
    finally:
        consumer.close()
        admin.close()


class SinkProcess:
    """``python -m tonewatch sink``, started as production starts it: the settings as TONEWATCH_* variables."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings, self.log_path = settings, log_path
        self.pid = spawn([sys.executable, "-m", "tonewatch", "sink"], log_path, env=worker_env(settings), cwd=REPO)

    def alive(self) -> bool:
        return alive(self.pid)

    def kill(self) -> None:
        """kill -9: the batch in hand neither finished nor committed, no connection closed."""
        os.killpg(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.alive():
            assert time.monotonic() < deadline, "kill -9 did not end the sink"
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        url = f"http://{self.settings.metrics_host}:{self.settings.store.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == name and s.labels == labels)

    def wait_caught_up(self, timeout_s: float) -> None:
        """Until the group has committed every topic to its end: the sink commits only what it has stored."""
        deadline = time.monotonic() + timeout_s
        while _lag(self.settings) != 0:
            assert self.alive(), f"the sink died:\n{self.log()[-4000:]}"
            assert time.monotonic() < deadline, f"the sink did not catch up:\n{self.log()[-4000:]}"
            time.sleep(1.0)


StartSink = Callable[[Settings], "SinkProcess"]


@pytest.fixture
def start_sink(tmp_path: Path) -> Iterator[StartSink]:
    """Factory of sink processes, each with its own log; every one still alive is stopped at teardown."""
    started: list[SinkProcess] = []

    def start(settings: Settings) -> SinkProcess:
        started.append(SinkProcess(settings, tmp_path / f"sink-{len(started)}.log"))
        return started[-1]

    yield start
    for s in started:
        stop(s.pid, timeout_s=10)


def _wait_landed(sink: SinkProcess, at_least: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while (n := _landed(sink.settings)) < at_least:
        assert sink.alive(), f"the sink died:\n{sink.log()[-4000:]}"
        assert time.monotonic() < deadline, f"{n}/{at_least} rows after {timeout_s}s:\n{sink.log()[-4000:]}"
        time.sleep(0.05)
    return n


def _assert_exactly(settings: Settings, expected: Keys) -> None:
    stored = _stored(settings)
    for kind in KEYS:
        missing, twice = expected[kind] - stored[kind], stored[kind] - expected[kind]
        assert not missing and not twice, f"{kind}: {len(missing)} missing, {len(twice)} extra/duplicated " \
                                          f"({list(missing)[:3]} / {list(twice)[:3]})"
    assert topic_size(settings.kafka, settings.kafka.topic("dead-letter")) == 0
    assert_volume_counts_each_message_once(settings)  # a batch written again after the fault added nothing


@contextlib.contextmanager
def _write_blocked(settings: Settings, sink: SinkProcess) -> Iterator[None]:
    """Holds a lock on ``messages`` until the sink's next write waits on it: the sink is then inside a database
    transaction, its batch read and not yet committed anywhere it should not be. A kill -9 at a random moment
    mostly finds it between batches; this finds it at the moment a wrong order (offsets first) loses rows."""
    assert settings.store.dsn is not None
    dsn = settings.store.dsn.get_secret_value()
    with psycopg.connect(dsn) as locker, psycopg.connect(dsn, autocommit=True) as watcher:
        locker.execute("LOCK TABLE messages IN SHARE MODE")  # an INSERT's ROW EXCLUSIVE waits on it
        deadline = time.monotonic() + 30
        while not watcher.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'tonewatch-sink' "
                                  "AND datname = current_database() AND wait_event_type = 'Lock'").fetchone():
            assert sink.alive() and time.monotonic() < deadline, f"the sink never waited:\n{sink.log()[-4000:]}"
            time.sleep(0.05)
        yield
        locker.rollback()


def test_kill_9_sink_mid_backlog_lands_every_row_once(stores: Stores, start_sink: StartSink) -> None:
    settings = _fresh(stores)
    expected = _produce(settings, _backlog("k", 3000, datetime.now(UTC) - timedelta(hours=1)))
    total = sum(sum(k.values()) for k in expected.values())
    sink = start_sink(settings)
    first = _wait_landed(sink, 500)
    sink.kill()  # wherever it is
    sink = start_sink(settings)
    _wait_landed(sink, first + 200)
    with _write_blocked(settings, sink):
        second = _landed(settings)
        sink.kill()  # in the middle of writing a batch
    assert first < second < total, f"the backlog ({total} rows) drained before the kills: make it larger"
    sink = start_sink(settings)
    sink.wait_caught_up(timeout_s=60)
    print(f"\nSINK kill -9 x2: {total} rows, {first} and {second} landed at the kills")
    _assert_exactly(settings, expected)
    assert sink.alive()


OUTAGE_S = 30.0


def test_postgres_down_30s_while_records_arrive(stores: Stores, start_sink: StartSink) -> None:
    settings = _fresh(stores)
    start = datetime.now(UTC) - timedelta(hours=6)
    chunk = iter(range(100))

    def produce(scored: int = 200) -> Keys:
        n = next(chunk)  # ten minutes of event time apiece: no two chunks share a window
        return _produce(settings, _backlog(f"c{n}", scored, start + timedelta(minutes=10 * n)))

    expected = [produce(400)]
    sink = start_sink(settings)
    _wait_landed(sink, sum(sum(k.values()) for k in expected[0].values()))
    assert sink.metric("tonewatch_sink_errors_total", reason="database") == 0

    data_dir, dsn, t_stop = stores.pg.data_dir, stores.pg.dsn, time.monotonic()
    # SIGTERM is a smart shutdown, which waits for the sink's session: after 2 s it ends as SIGKILL, the harsher
    # stop (no checkpoint; the restart recovers from the WAL)
    stop(stores.pg.pid, timeout_s=2.0)
    # records keep arriving, the backlog grows in Kafka. The first comes a few seconds in: the sink's backoff
    # (1, 2, 4, 8, 16 s) then tries again ~36 s after the stop, just after the restart (a miss costs 30 s more)
    while time.monotonic() - t_stop < OUTAGE_S - 5:
        time.sleep(3.0)
        expected.append(produce())
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_stop)))
    assert sink.alive(), sink.log()[-4000:]
    stores.pg = start_postgres(data_dir)
    down_s = time.monotonic() - t_stop
    assert stores.pg.dsn == dsn  # the same port: the DSN the sink holds reaches it again
    expected.append(produce())

    sink.wait_caught_up(timeout_s=75)  # the sink's backoff reaches 30 s between tries
    print(f"\nSINK PostgreSQL down {down_s:.0f}s: {len(expected)} chunks, drained "
          f"{time.monotonic() - t_stop - down_s:.0f}s after the restart")
    _assert_exactly(settings, {kind: sum((k[kind] for k in expected), Counter()) for kind in KEYS})
    assert sink.alive()
    assert sink.metric("tonewatch_sink_errors_total", reason="database") > 0
    assert "database failed" in (log := sink.log()) and "retrying in" in log, log[-4000:]
