"""Rows into the store: one transaction per batch, upserts idempotent on each table's natural key.

Replaying a topic writes nothing new: alerts and messages never change once written (DO NOTHING); trends,
incidents and model events take a newer record of the same key (DO UPDATE), but only when it differs, so a
replay of the same record neither rewrites the row nor counts as written.

The DO NOTHING kinds (scored messages: nearly every row) are COPied into a temporary table of the same columns
and inserted from it in one statement: a row per INSERT cost the sink a third of its time in parameter
binding and per-statement work. The DO UPDATE kinds keep one INSERT per row, in a pipeline: a key twice in one
INSERT ... SELECT ... DO UPDATE is an error, where one statement per row lets the later record win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from tonewatch.store.copy_text import CopyRows, copy_line
from tonewatch.store.errors import InvalidRecord, StoreError
from tonewatch.store.rows import KINDS
from tonewatch.store.schema import atomic, ensure_day_partitions

# table, columns (in rows.py's order), jsonb columns, natural key, columns a newer record replaces (None: keep)
_TABLES: dict[str, tuple[str, tuple[str, ...], frozenset[str], tuple[str, ...], str | None]] = {
    "trends": ("trends", ("dimension", "key", "window_start", "window_end", "count", "negative", "share",
                          "corrected_share", "baseline", "corrected_baseline", "z", "record"),
               frozenset({"record"}), ("dimension", "key", "window_start"), "record"),
    "alerts": ("alerts", ("alert_id", "status", "dimension", "key", "severity", "window_start", "window_end", "z",
                          "reasons", "top_messages", "payload"),
               frozenset({"top_messages", "payload"}), ("alert_id", "status"), None),
    "incidents": ("incidents", ("incident_id", "version", "severity", "status", "tickers", "opened_at", "payload"),
                  frozenset({"payload"}), ("incident_id", "version"), "payload"),
    "scored": ("messages", ("id", "ts", "source", "text", "sentiment", "p_negative", "probs", "topic", "tickers",
                            "sectors", "model_versions"),
               frozenset({"probs", "model_versions"}), ("ts", "id"), None),
    "model_events": ("model_events", ("event_key", "at", "kind", "model", "version", "payload"),
                     frozenset({"payload"}), ("event_key",), "payload"),
}


# in key order, so two sinks adding to the same minutes lock them in the same order
_VOLUME = ("INSERT INTO ticker_volume (ticker, minute, source, messages) "
           "SELECT t, date_trunc('minute', ins.ts), ins.source, count(*) FROM ins, unnest(ins.tickers) AS t "
           "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
           "ON CONFLICT (ticker, minute, source) DO UPDATE SET messages = ticker_volume.messages + EXCLUDED.messages")


# the DO NOTHING kinds (no column a newer record replaces): COPied through a temporary table (staged_sql)
COPIED_KINDS = frozenset(kind for kind, table in _TABLES.items() if table[4] is None)


def staged_sql(kind: str) -> tuple[str, str, str] | None:
    """For a DO NOTHING kind: its temporary table's creation (emptied at each commit), its COPY, and the INSERT
    from it; None for the others. The temporary table takes the table's columns and NOT NULLs (LIKE), so a row
    the table would refuse is refused by the COPY with the same error class."""
    table, columns, _, key, whole = _TABLES[kind]
    if whole is not None:
        return None
    names, stage = ", ".join(columns), f"stage_{table}"
    insert = f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} ON CONFLICT ({', '.join(key)}) DO NOTHING"
    # it selects how many rows it inserted; a scored row inserted, and only those, adds to the volume rollup
    # (migration 0006)
    if kind == "scored":
        insert = f"WITH ins AS ({insert} RETURNING ts, source, tickers), vol AS ({_VOLUME}) SELECT count(*) FROM ins"
    else:
        insert = f"WITH ins AS ({insert} RETURNING 1) SELECT count(*) FROM ins"
    return (f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS",
            f"COPY {stage} ({names}) FROM STDIN", insert)


def upsert_sql(kind: str) -> str:
    """The INSERT of one row of ``kind``. ``whole`` is the column holding the whole record: when it is unchanged
    the row is too, and the update is skipped (no new row version, no count)."""
    table, columns, jsonb, key, whole = _TABLES[kind]
    values = ", ".join("%s::jsonb" if c in jsonb else "%s" for c in columns)
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) ON CONFLICT ({', '.join(key)}) "
    if whole is None:
        return head + "DO NOTHING"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    return head + f"DO UPDATE SET {updates} WHERE {table}.{whole} IS DISTINCT FROM EXCLUDED.{whole}"


class StoreWriter:
    """Writes batches of rows (tonewatch/store/rows.py) on one connection, which it commits."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._sql = {kind: upsert_sql(kind) for kind in KINDS}
        self._staged = {kind: staged for kind in KINDS if (staged := staged_sql(kind)) is not None}

    def write(self, rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> dict[str, int]:
        """Every row in one transaction, committed at the end; returns per kind the rows inserted or changed
        (0 for rows already there as they are). On a database error nothing is written: :class:`StoreError`,
        caused by psycopg's error (a ``DataError``/``IntegrityError`` cause: the database refused a row)."""
        unknown = sorted(set(rows) - set(KINDS))
        if unknown:
            raise InvalidRecord(f"unknown kinds {unknown} (known: {', '.join(KINDS)})")
        written: dict[str, int] = {}
        try:
            with atomic(self._conn):
                if rows.get("scored"):
                    ensure_day_partitions(self._conn, {row[1].date() for row in rows["scored"]})
                for kind in KINDS:
                    if rows.get(kind):
                        written[kind] = self._upsert(kind, rows[kind])
        except psycopg.Error as exc:
            raise StoreError(f"writing {sum(len(r) for r in rows.values())} rows failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        return written

    def _upsert(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> int:
        if kind in self._staged:
            return self._copy(kind, rows)
        with self._conn.cursor() as cur:
            cur.executemany(self._sql[kind], rows)  # in a pipeline: one round trip for the lot
            return max(cur.rowcount, 0)

    def _copy(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> int:
        create, copy, insert = self._staged[kind]
        with self._conn.cursor() as cur:
            cur.execute(create.encode())  # a notice once it exists; its rows go at every commit
            text = "".join(rows.lines if isinstance(rows, CopyRows) else map(copy_line, rows))
            with cur.copy(copy.encode()) as out:
                out.write(text.encode())
            cur.execute(insert.encode())
            return int(cur.fetchone()[0])  # type: ignore[index]  # the rows inserted (staged_sql selects them)
