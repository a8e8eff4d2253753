"""The history store's dashboards against the real PostgreSQL, filled by the real sink from a replay's topics."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

from streams.knowledge import load_sectors
from tests.dashboard_sql import SQL_DASHBOARDS, expand, sql_queries
from tests.integration.postgres import running_postgres
from tests.integration.test_sink import _sink_until_caught_up
from tonewatch.core.kafka_io import read_json
from tonewatch.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def check_store_dashboards(settings: Settings, folder: Path, ticker: str) -> int:
    """Sinks the replay's topics into a fresh store, then runs every panel, variable and annotation query of the
    SQL dashboards over the replay's event-time range: each must return rows. Returns the queries checked."""
    with running_postgres(folder) as pg:
        local = settings.updated(store__dsn=SecretStr(pg.dsn), store__metrics_port=0, store__batch_timeout_s=0.3)
        assert _sink_until_caught_up(local, timeout_s=120.0) > 0
        checked = 0
        with psycopg.connect(pg.dsn) as conn:
            start, end = conn.execute("SELECT min(window_start) - interval '1 hour', "
                                      "max(window_end) + interval '1 hour' FROM trends").fetchone()  # type: ignore[misc]
            # Grafana quotes the value of a variable that has an "All" option, as the sector's
            variables = {"ticker": ticker, "sector": f"'{load_sectors(None)[ticker]}'"}
            for stem in SQL_DASHBOARDS:
                dashboard = json.loads((REPO / "dashboards" / "json" / f"{stem}.json").read_text())
                for where, sql in sql_queries(dashboard):
                    rows = conn.execute(expand(sql, start, end, variables)).fetchall()
                    assert rows and any(v not in (None, 0) for v in rows[0]), f"{stem}: {where} returns no data"
                    checked += 1
            _check_sector_narrows_tickers(conn, ticker, variables["sector"])
            stored = conn.execute("SELECT window_start, count FROM trends WHERE dimension = 'ticker' AND key = %s",
                                  (ticker,)).fetchall()
    # and the numbers are the topic's: one row per closed window of the ticker, with its count
    closed = Counter((t["window_start"], t["count"]) for t in read_json(settings.kafka, settings.kafka.topic("trends"))
                     if t["dimension"] == "ticker" and t["key"] == ticker)
    assert sorted((w.timestamp(), n) for w, n in stored) == sorted(closed), "the store's windows are not the topic's"
    return checked


def _check_sector_narrows_tickers(conn: psycopg.Connection[Any], ticker: str, sector: str) -> None:
    """The Ticker dashboard's ticker list: every ticker for All, the sector's own tickers for a sector."""
    board = json.loads((REPO / "dashboards" / "json" / "ticker.json").read_text())
    query = next(v["query"] for v in board["templating"]["list"] if v["name"] == "ticker")
    everyone = {r[0] for r in conn.execute(query.replace("$sector", "'*'")).fetchall()}
    mine = {r[0] for r in conn.execute(query.replace("$sector", sector)).fetchall()}
    sectors = load_sectors(None)
    assert ticker in mine and mine < everyone, (mine, everyone)
    assert all(sectors[t] == sector.strip("'") for t in mine), mine


# the volume rollup's rows that the messages do not give, and the other way round
VOLUME_DIFF = ("WITH v AS (SELECT ticker, source, minute, messages FROM ticker_volume), m AS (SELECT t, source, "
               "date_trunc('minute', ts), count(*)::int FROM messages, unnest(tickers) t GROUP BY 1, 2, 3) "
               "(TABLE v EXCEPT ALL TABLE m) UNION ALL (TABLE m EXCEPT ALL TABLE v)")


def assert_volume_counts_each_message_once(settings: Settings) -> None:
    """``ticker_volume`` holds exactly the store's messages counted per ticker, minute and source."""
    assert settings.store.dsn is not None
    with psycopg.connect(settings.store.dsn.get_secret_value(), connect_timeout=5) as c:
        differ = c.execute(VOLUME_DIFF).fetchall()
    assert differ == [], differ[:5]
