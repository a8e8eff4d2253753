"""The history commands' queries (``tonewatch history ...``): rows as dicts, column names as in the schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row, tuple_row

from tonewatch.core.errors import InvalidInput

# a trend row's columns after dimension and key, which the query fixes (trends_row's order)
_TREND_VALUES: tuple[LiteralString, ...] = ("window_start", "window_end", "count", "negative", "share",
                                            "corrected_share", "baseline", "corrected_baseline", "z")
_ALERT = "alert_id, status, dimension, key, severity, window_start, window_end, z, reasons, top_messages, payload"
_MESSAGE = "id, ts, source, text, sentiment, p_negative, probs, topic, tickers, sectors, model_versions"
# the expression of the messages_text index: a query must use the same one for the index to serve it
_DOCUMENT = "to_tsvector('english', text)"


def _fetch(conn: psycopg.Connection[Any], query: LiteralString, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def ticker_trend(conn: psycopg.Connection[Any], key: str, since: datetime,
                 dimension: str = "ticker") -> list[dict[str, Any]]:
    """One key's closed windows from ``since`` on, oldest first (the trends primary key serves it). Tickers are
    upper case throughout the pipeline, so a ticker key is matched in upper case."""
    key = key.upper() if dimension == "ticker" else key
    # The busiest ticker has 35,000 windows a month: the time went into the client, not PostgreSQL (14 ms). Binary
    # results spare both sides formatting and parsing timestamps and floats as text, and dimension and key,
    # equal to the parameters, are not sent at all (docs/store.md, Performance).
    query: LiteralString = (f"SELECT {', '.join(_TREND_VALUES)} FROM trends "
                            "WHERE dimension = %s AND key = %s AND window_start >= %s ORDER BY window_start")
    with conn.cursor(binary=True, row_factory=tuple_row) as cur:
        rows = cur.execute(query, (dimension, key, since)).fetchall()
    # a dict display, in _TREND_VALUES' order: half the time of dict(zip(...)) per row
    return [{"dimension": dimension, "key": key, "window_start": start, "window_end": end, "count": count,
             "negative": negative, "share": share, "corrected_share": corrected_share, "baseline": baseline,
             "corrected_baseline": corrected_baseline, "z": z}
            for start, end, count, negative, share, corrected_share, baseline, corrected_baseline, z in rows]


def alert_history(conn: psycopg.Connection[Any], since: datetime, key: str | None = None) -> list[dict[str, Any]]:
    """Alert state changes whose window starts at ``since`` or later (of one key, any dimension), oldest first;
    a firing record before its resolved one."""
    if key is None:
        return _fetch(conn, f"SELECT {_ALERT} FROM alerts WHERE window_start >= %s "
                            "ORDER BY window_start, alert_id, status", (since,))
    return _fetch(conn, f"SELECT {_ALERT} FROM alerts WHERE window_start >= %s AND key = %s "
                        "ORDER BY window_start, alert_id, status", (since, key))


def search_messages(conn: psycopg.Connection[Any], text: str | None, ticker: str | None, since: datetime,
                    limit: int = 50) -> list[dict[str, Any]]:
    """Scored messages since ``since``, most negative first: matching ``text`` (web-search syntax: words,
    "quoted phrases", -excluded, or) and naming ``ticker``, each when given."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}")
    where: list[LiteralString] = ["ts >= %s"]
    params: list[Any] = [since]
    if text:
        where.append(f"{_DOCUMENT} @@ websearch_to_tsquery('english', %s)")
        params.append(text)
    if ticker:
        where.append("tickers @> ARRAY[%s]::text[]")
        params.append(ticker.upper())  # as every scored record spells them
    query: LiteralString = (f"SELECT {_MESSAGE} FROM messages WHERE {' AND '.join(where)} "
                            "ORDER BY p_negative DESC, ts DESC, id LIMIT %s")
    return _fetch(conn, query, (*params, limit))
