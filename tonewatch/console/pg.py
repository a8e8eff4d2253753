"""The console's real collaborators: the PostgreSQL store (reads, audit, verdicts) and the Kafka topics."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from tonewatch.console import queries
from tonewatch.console.ports import AuditEntry, InboxFilter, Row, Verdict
from tonewatch.core.errors import ServiceError
from tonewatch.core.settings import Settings
from tonewatch.store import queries as history
from tonewatch.store.errors import StoreError
from tonewatch.store.schema import migrate

if TYPE_CHECKING:
    from models.feedback import Feedback

IDLE_CONNECTIONS = 4


class PgConsoleStore:
    """Reads and the console's writes over a few reused autocommit connections (psycopg_pool is not a dependency;
    a page's handful of queries must not each pay a SCRAM sign-in). A connection that failed is dropped."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def migrate(self) -> list[str]:
        """Apply the store's migrations (the console's tables among them), as the sink does at its start."""
        with psycopg.connect(self._dsn, connect_timeout=10, application_name="tonewatch-console") as conn:
            return migrate(conn)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10,
                                       application_name="tonewatch-console")
            yield conn
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"the store failed: {type(exc).__name__}: {str(exc).strip()}") from exc
            raise
        with self._lock:
            if len(self._idle) < IDLE_CONNECTIONS and conn.info.transaction_status == pq.TransactionStatus.IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def incidents(self, where: InboxFilter, limit: int) -> list[Row]:
        with self._conn() as conn:
            return queries.latest_incidents(conn, where, limit)

    def incident(self, incident_id: str) -> Row | None:
        with self._conn() as conn:
            return queries.incident(conn, incident_id)

    def key_windows(self, dimension: str, key: str, start: datetime, end: datetime) -> list[Row]:
        with self._conn() as conn:
            return queries.key_windows(conn, dimension, key, start, end)

    def latest_window(self, dimension: str, key: str) -> datetime | None:
        with self._conn() as conn:
            return queries.latest_window(conn, dimension, key)

    def trend(self, key: str, since: datetime) -> list[Row]:
        with self._conn() as conn:
            return history.ticker_trend(conn, key, since)

    def alerts(self, key: str, since: datetime) -> list[Row]:
        with self._conn() as conn:
            return history.alert_history(conn, since, key=key)

    def messages(self, ids: Sequence[str], start: datetime, end: datetime) -> list[Row]:
        with self._conn() as conn:
            return queries.messages_by_id(conn, ids, start, end)

    def message(self, message_id: str, ts: datetime) -> Row | None:
        with self._conn() as conn:
            return queries.message(conn, message_id, ts)

    def ticker_messages(self, ticker: str, since: datetime, limit: int) -> list[Row]:
        with self._conn() as conn:
            return history.search_messages(conn, None, ticker, since, limit=limit)

    def drift(self, model: str) -> list[Row]:
        with self._conn() as conn:
            return queries.latest_drift(conn, model)

    def audit(self, entry: AuditEntry) -> None:
        with self._conn() as conn:
            queries.insert_audit(conn, entry)

    def save_verdict(self, verdict: Verdict, entry: AuditEntry) -> None:
        with self._conn() as conn, conn.transaction():
            queries.upsert_verdict(conn, verdict)
            queries.insert_audit(conn, entry)


class KafkaConsoleWriter:
    """Writes through the same functions as ``tonewatch alerts ack`` and ``tonewatch feedback add``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def ack(self, record: dict[str, Any]) -> None:
        from tonewatch.notify.store import publish_ack

        with _kafka("the ack"):
            publish_ack(self._settings, record)

    def feedback(self, records: list[Feedback]) -> None:
        from models.feedback import publish

        with _kafka("the label"):
            publish(self._settings, records)


@contextlib.contextmanager
def _kafka(what: str) -> Iterator[None]:
    """Kafka's errors as a ServiceError: the page then says the write failed, and the audit gets no row for it."""
    from kafka.errors import KafkaError

    try:
        yield
    except KafkaError as exc:
        raise ServiceError(f"writing {what} to Kafka failed: {type(exc).__name__}: {exc}") from exc
