"""The history store on a real PostgreSQL: migrations, idempotent batches, the history queries, retention."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from streams.control.routing import ModelEvent
from streams.records import Scored
from streams.windows.alerts import alert_payload
from streams.windows.detector import ClosedWindow, Driver, Transition, Window, alert_id
from streams.windows.trends import trend_record
from tests.integration.postgres import running_postgres
from tonewatch.notify.incidents import group_alerts
from tonewatch.stack.postgres import PostgresProcess, start_postgres
from tonewatch.stack.procs import StackError
from tonewatch.store.errors import StoreError
from tonewatch.store.queries import alert_history, search_messages, ticker_trend
from tonewatch.store.rows import KINDS, to_row
from tonewatch.store.schema import drop_expired, ensure_day_partitions, migrate, sync_ticker_sectors
from tonewatch.store.writer import StoreWriter

pytestmark = pytest.mark.integration

DAY = datetime(2025, 12, 1, tzinfo=UTC)
WINDOW_S = 60
MIGRATED = ["0001_history", "0002_console", "0003_messages_p_negative", "0004_trends_covering",
            "0005_ticker_sectors", "0006_ticker_volume"]
TABLES = {"trends": "trends", "alerts": "alerts", "incidents": "incidents", "scored": "messages",
          "model_events": "model_events"}


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresProcess]:
    with running_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def conn(pg: PostgresProcess) -> Iterator[psycopg.Connection[Any]]:
    """A migrated, emptied store (the sink's kind of connection: not autocommit)."""
    with psycopg.connect(pg.dsn) as c:
        migrate(c)
        drop_expired(c, date(9999, 1, 1))
        c.execute("TRUNCATE trends, alerts, incidents, model_events, ticker_sectors, ticker_volume")
        c.commit()
        yield c


def _fresh_database(pg: PostgresProcess, name: str) -> str:
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    return pg.dsn.rsplit("/", 1)[0] + f"/{name}"


def _trend(key: str, start: datetime, count: int = 10, negative: int = 4) -> dict[str, Any]:
    w = Window(start=start.timestamp(), count=count, negative=negative, p_negative_sum=negative * 0.9,
               adjusted_sum=float(negative))
    return trend_record("ticker", key, ClosedWindow(w, baseline=0.1, alerting=False), WINDOW_S)


def _alert(key: str, start: datetime, status: str = "firing") -> dict[str, Any]:
    w = Window(start=start.timestamp(), count=12, negative=9, p_negative_sum=8.0, adjusted_sum=9.0,
               drivers=(Driver(f"{key}-m1", f"{key} recall", "news", 0.95, (key,)),))
    t = Transition(status, alert_id("ticker", key, start.timestamp()), w, baseline=0.1,  # type: ignore[arg-type]
                   score=5.5, severity="critical", reason="share")
    return json.loads(json.dumps(alert_payload(t, "ticker", key, WINDOW_S, 30)))


def _scored(mid: str, ts: datetime, text: str, p_negative: float, tickers: tuple[str, ...]) -> dict[str, Any]:
    probs = {"negative": p_negative, "neutral": round(1 - p_negative, 6), "positive": 0.0}
    return json.loads(Scored(id=mid, source="news", ts=ts, text=text, tickers=tickers, sentiment="negative",
                             sentiment_probs=probs, topic="Product", topic_probs={"Product": 1.0},
                             model_versions={"sentiment": "1"}, scored_at=ts, inference_ms=1.0).to_json())


def _records() -> dict[str, list[dict[str, Any]]]:
    firing = _alert("AAPL", DAY)
    incident = group_alerts([firing], gap_s=300, sectors={})[0]
    return {
        "trends": [_trend("AAPL", DAY + timedelta(minutes=i)) for i in range(3)] + [_trend("MSFT", DAY)],
        "alerts": [firing, _alert("AAPL", DAY, "resolved"), _alert("MSFT", DAY + timedelta(hours=1))],
        "incidents": [incident, {**incident, "version": 2, "status": "updated"}],
        "scored": [
            _scored("m1", DAY - timedelta(days=2), "Apple recalls old phones", 0.7, ("AAPL",)),
            _scored("m2", DAY - timedelta(days=1), "Microsoft results beat", 0.1, ("MSFT",)),
            _scored("m3", DAY + timedelta(hours=3), "Apple recalls every phone worldwide", 0.99, ("AAPL",)),
            _scored("m4", DAY + timedelta(hours=4), "Apple shares steady", 0.3, ("AAPL", "MSFT")),
        ],
        "model_events": [ModelEvent.from_dict({"model": "sentiment", "version": v, "event": e,
                                               "at": "2025-12-01T09:00:00Z"}).to_dict()
                         for v, e in ((1, "loaded"), (2, "promoted"))],
    }


def _rows(records: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {kind: [to_row(kind, r) for r in recs] for kind, recs in records.items()}


def _counts(c: psycopg.Connection[Any]) -> dict[str, int]:
    return {kind: c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for kind, table in TABLES.items()}


def test_migrate_applies_each_migration_once(pg: PostgresProcess) -> None:
    with psycopg.connect(_fresh_database(pg, "migrate_once")) as c:
        assert migrate(c) == MIGRATED
        assert migrate(c) == []
        assert c.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall() == [
            (name,) for name in MIGRATED]


def test_two_sinks_migrating_at_once_apply_it_once(pg: PostgresProcess) -> None:
    dsn = _fresh_database(pg, "migrate_race")
    results: list[list[str]] = []

    def run() -> None:
        with psycopg.connect(dsn) as c:
            results.append(migrate(c))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # each migration is its own transaction, so two sinks may share the work: each one applied once in all
    assert sorted(name for applied in results for name in applied) == MIGRATED


def test_ticker_sectors_become_the_knowledge_files_and_a_second_sync_changes_nothing(
    conn: psycopg.Connection[Any]
) -> None:
    assert sync_ticker_sectors(conn, {"AAPL": "Information Technology", "XOM": "Energy"}) == 2
    assert sync_ticker_sectors(conn, {"AAPL": "Information Technology", "XOM": "Energy"}) == 0
    # a ticker moved to another sector, one dropped from the file, one added: 3 rows
    assert sync_ticker_sectors(conn, {"AAPL": "Communication Services", "TSLA": "Consumer Discretionary"}) == 3
    assert conn.execute("SELECT ticker, sector FROM ticker_sectors ORDER BY 1").fetchall() == [
        ("AAPL", "Communication Services"), ("TSLA", "Consumer Discretionary")]
    assert sync_ticker_sectors(conn, {}) == 0  # no knowledge file: the last one's pairs stay
    assert conn.execute("SELECT count(*) FROM ticker_sectors").fetchone() == (2,)


def test_a_batch_written_twice_changes_nothing(conn: psycopg.Connection[Any]) -> None:
    rows = _rows(_records())
    writer = StoreWriter(conn)
    assert writer.write(rows) == {kind: len(r) for kind, r in rows.items()}
    counts = _counts(conn)
    assert counts == {kind: len(r) for kind, r in rows.items()}
    versions = conn.execute("SELECT xmin::text FROM trends ORDER BY key, window_start").fetchall()
    conn.commit()
    assert writer.write(rows) == dict.fromkeys(KINDS, 0)
    assert _counts(conn) == counts
    # not even rewritten: the same row versions
    assert conn.execute("SELECT xmin::text FROM trends ORDER BY key, window_start").fetchall() == versions


def test_a_message_twice_in_one_batch_is_written_once(conn: psycopg.Connection[Any]) -> None:
    row = _rows(_records())["scored"][0]
    assert StoreWriter(conn).write({"scored": [row, row]}) == {"scored": 1}  # COPY, then INSERT ... DO NOTHING
    assert conn.execute("SELECT id, ts, text, tickers, probs FROM messages").fetchall() == [
        (row[0], row[1], row[3], row[8], json.loads(row[6]))]


def test_awkward_text_comes_back_as_it_was_written(conn: psycopg.Connection[Any]) -> None:
    """The sink's own COPY text (tonewatch/store/copy_text.py), made ahead by CopyRows and by the writer alike."""
    from tonewatch.store.copy_text import CopyRows

    base = _rows(_records())["scored"][0]
    texts = ["tab\there", "lines\nand\r\nreturns", "back\\slash \\N \\.", 'quotes " and {braces}, commas',
             "émoji 🚀📉 ünïcode", "\\u0000 spelt out", "NULL"]
    lists = [[], ["NULL"], ['a"b', "c\\d", "{x,y}"], ["BRK.B", "tab\tin"], ["sp ace"], [""], ["z"]]
    ahead = CopyRows()
    rows = [(f"odd-{i}", base[1], "chat", text, *base[4:8], tickers, ["S, with comma"], base[10])
            for i, (text, tickers) in enumerate(zip(texts, lists, strict=True))]
    for row in rows[:4]:
        ahead.append(row)
    writer = StoreWriter(conn)
    assert writer.write({"scored": ahead}) == {"scored": 4}
    assert writer.write({"scored": rows[4:]}) == {"scored": 3}
    found = conn.execute("SELECT id, text, tickers, sectors FROM messages WHERE id LIKE 'odd-%' ORDER BY id").fetchall()
    assert found == [(r[0], r[3], r[8], r[9]) for r in rows]


def _volume(c: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return c.execute("SELECT ticker, source, minute, messages FROM ticker_volume ORDER BY 1, 3").fetchall()


def test_ticker_volume_counts_each_new_message_once_per_ticker(conn: psycopg.Connection[Any]) -> None:
    rows = _rows(_records())["scored"]
    writer = StoreWriter(conn)
    writer.write({"scored": rows + rows[:1]})  # a copy within the batch
    writer.write({"scored": rows})  # and the whole batch again: a redelivery counts nothing
    minute = lambda i: rows[i][1].replace(second=0, microsecond=0)  # noqa: E731
    assert _volume(conn) == sorted([("AAPL", "news", minute(0), 1), ("MSFT", "news", minute(1), 1),
                                    ("AAPL", "news", minute(2), 1), ("AAPL", "news", minute(3), 1),
                                    ("MSFT", "news", minute(3), 1)], key=lambda r: (r[0], r[2]))
    # the rollup is what the Ticker dashboard's volume panel reads: it agrees with the messages it sums
    assert conn.execute("SELECT sum(messages) FROM ticker_volume").fetchone() == \
        conn.execute("SELECT count(*) FROM messages, unnest(tickers)").fetchone()


def test_a_newer_record_of_the_same_window_replaces_the_row(conn: psycopg.Connection[Any]) -> None:
    writer = StoreWriter(conn)
    writer.write({"trends": [to_row("trends", _trend("AAPL", DAY))]})
    assert writer.write({"trends": [to_row("trends", _trend("AAPL", DAY, count=11, negative=6))]}) == {"trends": 1}
    assert conn.execute("SELECT count, negative, record->>'count' FROM trends").fetchall() == [(11, 6, "11")]


def test_a_batch_the_database_refuses_is_rolled_back_whole(conn: psycopg.Connection[Any]) -> None:
    good = to_row("trends", _trend("AAPL", DAY))
    bad = to_row("alerts", _alert("AAPL", DAY))
    bad = (*bad[:5], None, *bad[6:])  # no window_start: a NOT NULL column
    with pytest.raises(StoreError) as exc:
        StoreWriter(conn).write({"trends": [good], "alerts": [bad]})
    assert isinstance(exc.value.__cause__, psycopg.IntegrityError)  # the sink dead-letters such a row
    assert _counts(conn)["trends"] == 0
    assert StoreWriter(conn).write({"trends": [good]}) == {"trends": 1}  # the connection is usable again


def test_a_closed_connection_is_a_store_error(pg: PostgresProcess) -> None:
    c = psycopg.connect(pg.dsn)
    c.close()
    with pytest.raises(StoreError):
        StoreWriter(c).write({"trends": [to_row("trends", _trend("AAPL", DAY))]})


def test_the_history_queries(conn: psycopg.Connection[Any]) -> None:
    StoreWriter(conn).write(_rows(_records()))
    trend = ticker_trend(conn, "aapl", DAY + timedelta(minutes=1))
    assert [(r["key"], r["window_start"], r["count"], r["share"]) for r in trend] == [
        ("AAPL", DAY + timedelta(minutes=i), 10, 0.4) for i in (1, 2)]
    with conn.cursor(row_factory=dict_row) as cur:  # every column, in the table's order, as text results give them
        whole = cur.execute("SELECT dimension, key, window_start, window_end, count, negative, share, "
                            "corrected_share, baseline, corrected_baseline, z FROM trends WHERE key = 'AAPL' "
                            "AND window_start >= %s ORDER BY window_start", (DAY + timedelta(minutes=1),)).fetchall()
    assert [list(r.items()) for r in trend] == [list(r.items()) for r in whole]

    alerts = alert_history(conn, DAY)
    assert [(r["key"], r["status"]) for r in alerts] == [("AAPL", "firing"), ("AAPL", "resolved"), ("MSFT", "firing")]
    assert [r["status"] for r in alert_history(conn, DAY, key="AAPL")] == ["firing", "resolved"]
    assert alert_history(conn, DAY + timedelta(hours=2)) == []
    assert alerts[0]["z"] == 5.5 and alerts[0]["reasons"] == "share" and alerts[0]["top_messages"][0]["tickers"] == [
        "AAPL"]

    since = DAY - timedelta(days=7)
    assert [r["id"] for r in search_messages(conn, "recall", None, since)] == ["m3", "m1"]  # stemmed; most negative
    assert [r["id"] for r in search_messages(conn, "apple -recall", None, since)] == ["m4"]
    assert [r["id"] for r in search_messages(conn, None, "msft", since)] == ["m4", "m2"]
    assert [r["id"] for r in search_messages(conn, "apple", "AAPL", DAY, limit=1)] == ["m3"]
    assert search_messages(conn, "recall", None, DAY + timedelta(days=1)) == []


def test_drop_expired_drops_only_older_day_partitions(conn: psycopg.Connection[Any]) -> None:
    StoreWriter(conn).write({"scored": _rows(_records())["scored"]})
    ensure_day_partitions(conn, [DAY.date() + timedelta(days=1)])
    conn.commit()
    assert drop_expired(conn, DAY.date()) == ["messages_20251129", "messages_20251130"]
    assert [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY id")] == ["m3", "m4"]
    assert {r[2].date() for r in _volume(conn)} == {DAY.date()}  # the rollup's older days go with them
    assert drop_expired(conn, DAY.date()) == []
    parts = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                         "WHERE i.inhparent = 'messages'::regclass ORDER BY 1").fetchall()
    assert parts == [("messages_20251201",), ("messages_20251202",)]


def test_a_restart_on_the_same_folder_keeps_its_port_and_its_rows(tmp_path: Path) -> None:
    """The DSN the sink holds stays valid across a PostgreSQL restart; a port taken meanwhile is an error."""
    with running_postgres(tmp_path) as first, psycopg.connect(first.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE kept (x int)")
        c.execute("INSERT INTO kept VALUES (1)")
    with running_postgres(tmp_path) as second, psycopg.connect(second.dsn) as c:
        assert second.dsn == first.dsn
        assert c.execute("SELECT x FROM kept").fetchall() == [(1,)]
    port = int(first.dsn.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as squatter:
        # the server closed its connections first, so they may sit in TIME_WAIT on this port: bind past them
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(StackError, match=f"port {port}.*taken"):
            start_postgres(tmp_path)


def test_the_report_reads_a_run_back_from_the_store(conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    from tonewatch.report.render import write_report
    from tonewatch.report.store import read_store

    records = _records()
    StoreWriter(conn).write(_rows(records))
    run = read_store(conn, since=DAY - timedelta(days=1, hours=1))
    def window(t: dict[str, Any]) -> tuple[float, str]:
        return t["window_start"], t["key"]

    assert run.trends == sorted(records["trends"], key=window)  # each record as the topic had it, in window order
    assert sorted(a["id"] + a["status"] for a in run.alerts) == sorted(a["id"] + a["status"] for a in records["alerts"])

    def scored(s: dict[str, Any]) -> tuple[datetime, str, str]:
        return datetime.fromisoformat(s["ts"]), s["source"], json.dumps(s["model_versions"])

    assert sorted(map(scored, run.scored)) == sorted(map(scored, records["scored"][1:]))  # m1 is before since
    assert run.dead == []  # dead letters stay on their topic
    page = write_report(run, tmp_path, source="the history store").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "AAPL" in page  # its trends and volume plotted
