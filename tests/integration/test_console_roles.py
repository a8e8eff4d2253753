"""Compose's PostgreSQL roles on a real PostgreSQL 15: deploy/postgres/*.sh run as the image runs them on a fresh
volume, then the sink's migrations; the console's login reads everything and writes only its own tables."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.integration.postgres import running_postgres
from tonewatch.console.pg import PgConsoleStore
from tonewatch.console.ports import AuditEntry, Verdict
from tonewatch.store.schema import migrate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONSOLE, READER = "tonewatch_console", "grafana_reader"
PASSWORDS = {"POSTGRES_CONSOLE_PASSWORD": "console-pw-0123456789", "POSTGRES_GRAFANA_PASSWORD": "reader-pw-0123456789"}


def _init_scripts(owner_dsn: str) -> None:
    """Each script in name order, executed (they are executable), with the image's variables; psql reaches the
    throwaway server through libpq's variables where the image's first-start server listens on its socket."""
    psql = shutil.which("psql")
    assert psql, "psql is not installed (make system)"
    info = conninfo_to_dict(owner_dsn)
    env = {**os.environ, **PASSWORDS, "PATH": f"{Path(psql).parent}:{os.environ['PATH']}",
           "POSTGRES_USER": str(info["user"]), "POSTGRES_DB": str(info["dbname"]),
           "PGHOST": str(info["host"]), "PGPORT": str(info["port"]), "PGPASSWORD": str(info["password"])}
    for script in sorted((REPO / "deploy" / "postgres").glob("*.sh")):
        done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{script.name}: {done.stdout}{done.stderr}"


def _login(owner_dsn: str, role: str) -> str:
    password = PASSWORDS["POSTGRES_CONSOLE_PASSWORD" if role == CONSOLE else "POSTGRES_GRAFANA_PASSWORD"]
    return make_conninfo(owner_dsn, user=role, password=password)


@pytest.fixture(scope="module")
def dsns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The owner's, the console's and Grafana's DSNs to a store the sink has migrated."""
    with running_postgres(tmp_path_factory.mktemp("postgres")) as pg:
        _init_scripts(pg.dsn)  # the superuser stands for compose's owner `tonewatch`, a superuser too
        with psycopg.connect(pg.dsn) as conn:
            migrate(conn)
        yield {"owner": pg.dsn, CONSOLE: _login(pg.dsn, CONSOLE), READER: _login(pg.dsn, READER)}


def _denied(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def _rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def test_the_console_starts_reads_and_writes_its_own_tables(dsns: dict[str, str]) -> None:
    store = PgConsoleStore(dsns[CONSOLE])
    try:
        assert store.migrate() == []  # `tonewatch console` migrates at its start: the sink has done it all
        store.audit(AuditEntry("ana", "sign-in", "10.0.0.7", after={"role": "analyst"}))  # its id: the identity
        store.save_verdict(Verdict("inc-1", "true_alarm", "ana", None),
                           AuditEntry("ana", "verdict", "inc-1", None, {"verdict": "true_alarm"}))
        store.save_verdict(Verdict("inc-1", "false_alarm", "bob", "a meme"),  # the upsert's UPDATE
                           AuditEntry("bob", "verdict", "inc-1", {"verdict": "true_alarm"}, {"verdict": "false_alarm"}))
        assert store.trend("TSLA", datetime(2026, 1, 1, tzinfo=UTC)) == []
    finally:
        store.close()
    assert _rows(dsns[CONSOLE], "SELECT count(*) FROM trends") == [(0,)]
    assert _rows(dsns[CONSOLE], "SELECT verdict, username FROM verdicts") == [("false_alarm", "bob")]
    assert _rows(dsns[CONSOLE], "SELECT action FROM audit ORDER BY id") == [("sign-in",), ("verdict",), ("verdict",)]


@pytest.mark.parametrize("statement", [
    "INSERT INTO trends (dimension, key, window_start, window_end, count, negative, share, record) "
    "VALUES ('ticker', 'X', now(), now(), 1, 0, 0, '{}')",
    "DELETE FROM audit",
    "UPDATE audit SET username = 'nobody'",
    "TRUNCATE audit",
    "DELETE FROM verdicts",
    "UPDATE incidents SET status = 'resolved'",
    "CREATE TABLE scratch (x int)",
    "DROP TABLE verdicts",
])
def test_the_console_cannot_write_the_history_or_rewrite_the_audit(dsns: dict[str, str], statement: str) -> None:
    _denied(dsns[CONSOLE], statement)


def test_grafana_still_only_reads_and_never_the_audit(dsns: dict[str, str]) -> None:
    privileges = {(table, privilege): allowed for table, privilege, allowed in _rows(dsns["owner"], (
        f"SELECT t, p, has_table_privilege('{READER}', t, p) FROM unnest(ARRAY['audit', 'verdicts', 'trends']) t, "
        "unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p"))}
    assert {key for key, allowed in privileges.items() if allowed} == {("verdicts", "SELECT"), ("trends", "SELECT")}
