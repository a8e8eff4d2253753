"""The store's schema: numbered SQL migrations, and the day partitions of ``messages``.

Migrations are plain ``NNNN_name.sql`` files applied in order, each recorded in ``schema_migrations``. Alembic
was considered and declined: we have no SQLAlchemy models for it to compare, and it would bring SQLAlchemy for
what a numbered file and one table do.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq, sql

from tonewatch.store.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_PARTITION = re.compile(r"messages_(\d{8})")
# pg_advisory_xact_lock keys: two sinks starting at once migrate, or create a day's partition, one at a time
MIGRATION_LOCK = 0x746F6E65_00000001
PARTITION_LOCK = 0x746F6E65_00000002


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def migrations(folder: Path = MIGRATIONS) -> list[Migration]:
    """The folder's migrations in version order; a file that breaks the naming, or a version twice, is refused."""
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.fullmatch(path.name)
        if match is None:
            raise StoreError(f"migration {path.name}: expected NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise StoreError(f"migrations {found[version].path.name} and {path.name} share version {version}")
        found[version] = Migration(version, path.stem, path)
    return [found[v] for v in sorted(found)]


@contextlib.contextmanager
def atomic(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One committed transaction. A non-autocommit connection may already be inside one (any statement opens
    it): that is committed too, so the work is durable when this returns. On an error all of it is rolled back."""
    try:
        with conn.transaction():
            yield
        if conn.info.transaction_status == pq.TransactionStatus.INTRANS:
            conn.commit()
    except BaseException:
        if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
        raise


def migrate(conn: psycopg.Connection[Any], folder: Path = MIGRATIONS) -> list[str]:
    """Apply the migrations not yet recorded, in order, each in a transaction of its own; returns their names.

    Each transaction first takes the migration lock, then reads what is applied: a second sink starting at the
    same time waits, then finds the migration done.
    """
    applied = []
    try:
        for m in migrations(folder):
            with atomic(conn):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                # looked up first: a login without CREATE (the console's) is refused even IF NOT EXISTS
                if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
                    conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                                 "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (m.version,)).fetchone():
                    continue
                conn.execute(m.path.read_text(), prepare=False)  # no parameters: several statements in one
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name))
            applied.append(m.name)
    except psycopg.Error as exc:
        raise StoreError(f"migrating the store failed: {exc}") from exc
    return applied


def partition_name(day: date) -> str:
    return f"messages_{day:%Y%m%d}"


def _bound(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _existing(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = 'messages'::regclass").fetchall()
    return {str(r[0]) for r in rows}


def ensure_day_partitions(conn: psycopg.Connection[Any], days: Iterable[date]) -> None:
    """Create the missing ``messages`` partitions of these UTC days: inside the caller's transaction if one is
    open, else in one of their own. Only a missing one takes the partition lock, so batches of existing days
    never wait on it."""
    wanted = {partition_name(d): d for d in days}
    if not wanted:
        return
    if conn.info.transaction_status == pq.TransactionStatus.INTRANS and set(wanted) <= _existing(conn):
        return  # the usual case, read in the caller's transaction: no savepoint, two round trips fewer
    with conn.transaction():
        if set(wanted) <= _existing(conn):
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        existing = _existing(conn)  # again, under the lock: another sink may have just created it
        for name, day in sorted(wanted.items()):
            if name not in existing:
                conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF messages FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(name), sql.Literal(_bound(day)), sql.Literal(_bound(day + timedelta(days=1)))))


def drop_expired(conn: psycopg.Connection[Any], before: date) -> list[str]:
    """Drop the day partitions wholly before ``before`` (UTC days), and the volume rollup's rows of those days, in
    one transaction; returns the partitions' names."""
    try:
        with atomic(conn):
            expired = sorted(name for name in _existing(conn)
                             if (m := _PARTITION.fullmatch(name)) and m.group(1) < f"{before:%Y%m%d}")
            for name in expired:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            conn.execute("DELETE FROM ticker_volume WHERE minute < %s", (_bound(before),))
    except psycopg.Error as exc:
        raise StoreError(f"dropping expired partitions failed: {exc}") from exc
    return expired


def sync_ticker_sectors(conn: psycopg.Connection[Any], sectors: Mapping[str, str]) -> int:
    """Make ``ticker_sectors`` hold exactly ``sectors`` (ticker -> sector), in one transaction; returns the rows
    added, changed or removed. An empty mapping (no knowledge file) leaves the table as it is."""
    if not sectors:
        return 0
    pairs = sorted(sectors.items())
    try:
        with atomic(conn), conn.cursor() as cur:
            cur.execute("DELETE FROM ticker_sectors WHERE NOT (ticker = ANY(%s))", ([t for t, _ in pairs],))
            changed = max(cur.rowcount, 0)
            cur.executemany("INSERT INTO ticker_sectors (ticker, sector) VALUES (%s, %s) ON CONFLICT (ticker) "
                            "DO UPDATE SET sector = EXCLUDED.sector "
                            "WHERE ticker_sectors.sector IS DISTINCT FROM EXCLUDED.sector", pairs)
            return changed + max(cur.rowcount, 0)
    except psycopg.Error as exc:
        raise StoreError(f"writing the ticker sectors failed: {exc}") from exc
