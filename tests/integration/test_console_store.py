"""The console's tables and queries on a real PostgreSQL: migration 0002 applies after 0001 (and again changes
nothing), verdicts keep the latest with every one audited, and the inbox reads the latest version of each incident."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.integration.postgres import running_postgres
from tonewatch.console.pg import PgConsoleStore
from tonewatch.console.ports import AuditEntry, InboxFilter, Verdict
from tonewatch.stack.postgres import PostgresProcess
from tonewatch.store.errors import StoreError
from tonewatch.store.schema import MIGRATIONS, ensure_day_partitions, migrate

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresProcess]:
    with running_postgres(tmp_path_factory.mktemp("postgres")) as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:  # as compose's init script does, before any table
            conn.execute("CREATE ROLE grafana_reader LOGIN")
            conn.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO grafana_reader")
        yield server


@pytest.fixture(scope="module")
def store(pg: PostgresProcess) -> Iterator[PgConsoleStore]:
    found = PgConsoleStore(pg.dsn)
    assert found.migrate() == [f.stem for f in sorted(MIGRATIONS.glob("*.sql"))]  # 0002_console among them
    yield found
    found.close()


def _incident(conn: psycopg.Connection[Any], iid: str, version: int, severity: str, status: str,
              children: list[dict[str, Any]], opened: datetime) -> None:
    payload = {"id": iid, "version": version, "headline": children[0]["key"], "children": children}
    conn.execute("INSERT INTO incidents (incident_id, version, severity, status, tickers, opened_at, payload) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)",
                 (iid, version, severity, status, [], opened, json.dumps(payload)))


def test_the_migration_applies_once_and_makes_the_console_tables(pg: PostgresProcess, store: PgConsoleStore) -> None:
    with psycopg.connect(pg.dsn) as conn:
        assert migrate(conn) == []  # already applied: nothing again
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"audit", "verdicts", "incidents"} <= tables
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO verdicts (incident_id, verdict, username) VALUES ('i', 'maybe', 'ana')")


def test_the_latest_verdict_wins_and_every_one_is_audited(pg: PostgresProcess, store: PgConsoleStore) -> None:
    first = Verdict("inc-v", "true_alarm", "ana", None)
    store.save_verdict(first, AuditEntry("ana", "verdict", "inc-v", None, {"verdict": "true_alarm"}))
    second = Verdict("inc-v", "false_alarm", "bob", "a meme")
    store.save_verdict(second, AuditEntry("bob", "verdict", "inc-v", {"verdict": "true_alarm"},
                                          {"verdict": "false_alarm", "note": "a meme"}))
    store.audit(AuditEntry("eve", "sign-in refused", "10.0.0.9", after={"reason": "wrong name or password"}))
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT verdict, note, username FROM verdicts WHERE incident_id = 'inc-v'").fetchall() \
            == [("false_alarm", "a meme", "bob")]
        rows = conn.execute("SELECT username, action, target, before, after FROM audit ORDER BY id").fetchall()
    assert rows == [("ana", "verdict", "inc-v", None, {"verdict": "true_alarm"}),
                    ("bob", "verdict", "inc-v", {"verdict": "true_alarm"},
                     {"verdict": "false_alarm", "note": "a meme"}),
                    ("eve", "sign-in refused", "10.0.0.9", None, {"reason": "wrong name or password"})]


def test_the_inbox_reads_the_latest_version_of_each_incident(pg: PostgresProcess, store: PgConsoleStore) -> None:
    tsla = {"dimension": "ticker", "key": "TSLA", "id": "a1"}
    energy = {"dimension": "sector", "key": "Energy", "id": "a2"}
    with psycopg.connect(pg.dsn) as conn:
        _incident(conn, "inc-a", 1, "warning", "opened", [tsla], T0)
        _incident(conn, "inc-a", 2, "critical", "updated", [tsla, energy], T0)
        _incident(conn, "inc-b", 1, "warning", "resolved", [energy], T0 + timedelta(hours=1))
    store.save_verdict(Verdict("inc-a", "true_alarm", "ana"), AuditEntry("ana", "verdict", "inc-a"))

    def ids(**where: str) -> list[tuple[str, int]]:
        return [(r["incident_id"], r["version"]) for r in store.incidents(InboxFilter(**where), 50)]

    assert ids() == [("inc-b", 1), ("inc-a", 2)]  # newest first, latest versions only
    assert ids(status="open") == [("inc-a", 2)]
    assert ids(severity="warning") == [("inc-b", 1)]  # inc-a's latest version is critical
    assert ids(dimension="ticker", key="tsla") == [("inc-a", 2)]
    assert ids(dimension="ticker", key="Energy") == []  # dimension and key must hold for one child
    latest = store.incident("inc-a")
    assert latest is not None and latest["verdict"] == "true_alarm" and len(latest["payload"]["children"]) == 2


def test_messages_are_read_by_id_within_their_time_bounds(pg: PostgresProcess, store: PgConsoleStore) -> None:
    ts = T0 + timedelta(seconds=20)
    with psycopg.connect(pg.dsn) as conn:
        ensure_day_partitions(conn, {ts.date()})
        conn.execute("INSERT INTO messages (id, ts, source, text, sentiment, p_negative, probs, topic, tickers, "
                     "sectors, model_versions) VALUES ('m1', %s, 'chat', 'TSLA <PHONE>', 'neutral', 0.9, '{}', "
                     "'Markets', '{TSLA}', '{}', '{\"sentiment\": \"3\"}')", (ts,))
    assert [m["id"] for m in store.messages(["m1", "m2"], T0, T0 + timedelta(minutes=1))] == ["m1"]
    assert store.messages(["m1"], T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)) == []
    found = store.message("m1", ts)
    assert found is not None and found["model_versions"] == {"sentiment": "3"} and found["source"] == "chat"
    assert store.message("m1", ts + timedelta(seconds=1)) is None
    assert [m["id"] for m in store.ticker_messages("tsla", T0, 10)] == ["m1"]


def test_a_lost_connection_fails_one_read_and_the_next_reconnects(pg: PostgresProcess, store: PgConsoleStore) -> None:
    assert store.incident("inc-none") is None  # leaves an idle connection in the pool
    with psycopg.connect(pg.dsn, autocommit=True) as admin:  # as a PostgreSQL restart would
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'tonewatch-console'")
    with pytest.raises(StoreError):
        store.incident("inc-none")
    assert store.incident("inc-none") is None


class _Writer:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def ack(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def feedback(self, records: list[Any]) -> None:
        self.records.extend(records)


def test_the_pages_render_from_the_real_store(pg: PostgresProcess, store: PgConsoleStore) -> None:
    """The inbox, an incident (chart and messages) and a ticker on the rows the earlier tests stored."""
    import re

    from argon2 import PasswordHasher
    from fastapi.testclient import TestClient

    from tonewatch.console.app import create_app
    from tonewatch.console.auth import User
    from tonewatch.core.service_sections import ConsoleSettings

    child = {"dimension": "ticker", "key": "TSLA", "id": "a9", "status": "firing", "severity": "critical",
             "message_ids": ["m1"], "window": {"start": "2026-01-05T14:00:00Z", "end": "2026-01-05T14:01:00Z"}}
    with psycopg.connect(pg.dsn) as conn:
        _incident(conn, "inc-page", 1, "critical", "opened", [child], T0 + timedelta(days=1))
        for start, share in ((T0 - timedelta(minutes=1), 0.2), (T0, 0.7)):
            conn.execute("INSERT INTO trends (dimension, key, window_start, window_end, count, negative, share, "
                         "baseline, record) VALUES ('ticker', 'TSLA', %s, %s, 10, 5, %s, 0.2, '{}')",
                         (start, start + timedelta(minutes=1), share))
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    writer = _Writer()
    app = create_app(ConsoleSettings(), {"ana": User("ana", "analyst", hasher.hash("pw"))}, store, store, writer,
                     hasher=hasher)
    client = TestClient(app, follow_redirects=False)
    token = re.findall(r'name="csrf" value="([^"]+)"', client.get("/login").text)[0]
    assert client.post("/login", data={"username": "ana", "password": "pw", "csrf": token}).status_code == 303
    inbox = client.get("/")
    assert inbox.status_code == 200 and "/incidents/inc-page" in inbox.text
    page = client.get("/incidents/inc-page")
    assert page.status_code == 200 and '<polyline class="share"' in page.text and "TSLA &lt;PHONE&gt;" in page.text
    ticker = client.get("/tickers/TSLA?hours=48")
    assert ticker.status_code == 200 and '<polyline class="share"' in ticker.text
    token = re.findall(r'name="csrf" value="([^"]+)"', page.text)[0]
    ts = re.findall(r'name="ts" value="([^"]+)"', page.text)[0]
    assert client.post("/relabel", data={"csrf": token, "message_id": "m1", "ts": ts,
                                         "label": "negative"}).status_code == 303
    assert [r.text for r in writer.records] == ["TSLA <PHONE>"]
    with psycopg.connect(pg.dsn) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit WHERE username = 'ana' ORDER BY id DESC "
                                              "LIMIT 2")]
    assert actions == ["relabel", "sign-in"]


def test_grafanas_reader_sees_the_history_but_not_the_audit(pg: PostgresProcess, store: PgConsoleStore) -> None:
    with psycopg.connect(pg.dsn) as conn:
        can = {t: conn.execute("SELECT has_table_privilege('grafana_reader', %s, 'SELECT')", (t,)).fetchone()[0]
               for t in ("trends", "alerts", "verdicts", "audit")}  # type: ignore[index]
    assert can == {"trends": True, "alerts": True, "verdicts": True, "audit": False}


def test_a_false_alarm_verdict_shows_in_tonewatch_eval(pg: PostgresProcess, store: PgConsoleStore,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from tonewatch.cli import app

    with psycopg.connect(pg.dsn) as conn:
        conn.execute("DELETE FROM verdicts")
        child = [{"dimension": "ticker", "key": "TSLA"}]
        _incident(conn, "inc-e1", 1, "critical", "opened", child, datetime.now(UTC))
        _incident(conn, "inc-e2", 1, "warning", "opened", child, datetime.now(UTC))
    for iid, verdict in (("inc-e1", "true_alarm"), ("inc-e2", "true_alarm"), ("inc-e2", "false_alarm")):
        store.save_verdict(Verdict(iid, verdict, "ana", None), AuditEntry("ana", "verdict", iid, None, {}))
    monkeypatch.setenv("TONEWATCH_STORE__DSN", pg.dsn)
    out = CliRunner().invoke(app, ["eval", "verdicts", "--json"])
    assert out.exit_code == 0, out.output
    table = json.loads(out.output)
    assert table["all"] == {"true_alarm": 1, "false_alarm": 1, "judged": 2, "precision": 0.5}  # the latest wins
    assert table["warning"]["false_alarm"] == 1 and table["critical"]["precision"] == 1.0
