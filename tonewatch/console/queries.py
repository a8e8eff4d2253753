"""The console's own SQL (the history commands' queries are reused from ``tonewatch.store.queries``): the inbox,
one incident, bounded trend windows, messages by id, and the writes to ``audit`` and ``verdicts``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tonewatch.console.ports import AuditEntry, InboxFilter, Verdict

_TREND = ("dimension, key, window_start, window_end, count, negative, share, corrected_share, baseline, "
          "corrected_baseline")
_MESSAGE = "id, ts, source, text, sentiment, p_negative, probs, topic, tickers, sectors, model_versions"

# the latest version of every incident with its verdict; filters apply to that version
_LATEST: LiteralString = (
    "SELECT i.incident_id, i.version, i.severity, i.status, i.tickers, i.opened_at, i.payload, "
    "v.verdict, v.note AS verdict_note, v.username AS verdict_by, v.at AS verdict_at "
    "FROM (SELECT DISTINCT ON (incident_id) * FROM incidents ORDER BY incident_id, version DESC) i "
    "LEFT JOIN verdicts v USING (incident_id)")


def _fetch(conn: psycopg.Connection[Any], query: LiteralString, params: Sequence[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def latest_incidents(conn: psycopg.Connection[Any], where: InboxFilter, limit: int) -> list[dict[str, Any]]:
    """Newest first (by the start of the earliest firing window). A dimension and key filter must hold for one
    child: jsonb containment on the payload's children."""
    clauses: list[LiteralString] = ["TRUE"]
    params: list[Any] = []
    if where.severity:
        clauses.append("i.severity = %s")
        params.append(where.severity)
    if where.status == "open":  # opened or updated: not every child resolved yet
        clauses.append("i.status <> 'resolved'")
    elif where.status and where.status != "all":
        clauses.append("i.status = %s")
        params.append(where.status)
    child = {k: v for k, v in (("dimension", where.dimension), ("key", where.key)) if v}
    if child:
        if where.key and where.dimension == "ticker":
            child["key"] = where.key.upper()  # as the pipeline spells tickers
        clauses.append("i.payload->'children' @> %s::jsonb")
        params.append(json.dumps([child]))
    query: LiteralString = (f"{_LATEST} WHERE {' AND '.join(clauses)} "
                            "ORDER BY i.opened_at DESC NULLS LAST, i.incident_id LIMIT %s")
    return _fetch(conn, query, (*params, limit))


def incident(conn: psycopg.Connection[Any], incident_id: str) -> dict[str, Any] | None:
    rows = _fetch(conn, f"{_LATEST} WHERE i.incident_id = %s", (incident_id,))
    return rows[0] if rows else None


def key_windows(conn: psycopg.Connection[Any], dimension: str, key: str, start: datetime,
                end: datetime) -> list[dict[str, Any]]:
    """Bounded on both sides (the trends primary key serves it), unlike the history command's open-ended one."""
    return _fetch(conn, f"SELECT {_TREND} FROM trends WHERE dimension = %s AND key = %s AND window_start >= %s "
                        "AND window_start < %s ORDER BY window_start", (dimension, key, start, end))


def latest_window(conn: psycopg.Connection[Any], dimension: str, key: str) -> datetime | None:
    row = conn.execute("SELECT max(window_start) FROM trends WHERE dimension = %s AND key = %s",
                       (dimension, key)).fetchone()
    return row[0] if row else None


def messages_by_id(conn: psycopg.Connection[Any], ids: Sequence[str], start: datetime,
                   end: datetime) -> list[dict[str, Any]]:
    """The time bounds let the messages primary key (ts, id) and the day partitions serve it: an id alone would
    read every partition."""
    return _fetch(conn, f"SELECT {_MESSAGE} FROM messages WHERE ts >= %s AND ts < %s AND id = ANY(%s) "
                        "ORDER BY p_negative DESC, ts DESC, id", (start, end, list(ids)))


def message(conn: psycopg.Connection[Any], message_id: str, ts: datetime) -> dict[str, Any] | None:
    rows = _fetch(conn, f"SELECT {_MESSAGE} FROM messages WHERE ts = %s AND id = %s", (ts, message_id))
    return rows[0] if rows else None


def latest_drift(conn: psycopg.Connection[Any], model: str) -> list[dict[str, Any]]:
    """The newest drift event of a model per version and kind (class_mix, confidence): the Models page's PSI."""
    return _fetch(conn, "SELECT DISTINCT ON (version, payload->>'kind') version, payload->>'kind' AS kind, "
                        "(payload->>'psi')::float AS psi, (payload->>'threshold')::float AS threshold, at "
                        "FROM model_events WHERE model = %s AND kind = 'drift' "
                        "ORDER BY version, payload->>'kind', at DESC NULLS LAST", (model,))


def insert_audit(conn: psycopg.Connection[Any], entry: AuditEntry) -> None:
    conn.execute("INSERT INTO audit (username, action, target, before, after) VALUES (%s, %s, %s, %s, %s)",
                 (entry.username, entry.action, entry.target, _json(entry.before), _json(entry.after)))


def upsert_verdict(conn: psycopg.Connection[Any], v: Verdict) -> None:
    conn.execute("INSERT INTO verdicts (incident_id, verdict, note, username, at) VALUES (%s, %s, %s, %s, now()) "
                 "ON CONFLICT (incident_id) DO UPDATE SET verdict = EXCLUDED.verdict, note = EXCLUDED.note, "
                 "username = EXCLUDED.username, at = EXCLUDED.at", (v.incident_id, v.verdict, v.note, v.username))


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=lambda v: json.dumps(v, default=str))
