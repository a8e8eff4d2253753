"""Time the history store's queries on a month of data (issue #30: p95 under 200 ms each on this machine).

    .venv/bin/python -m benchmarks.store_queries [--messages 10000000] [--trends 1000000] [--dsn DSN]

Run it from the repository root (``-m``: it reads the dashboards' SQL through tests/dashboard_sql.py). Without
--dsn it starts its own PostgreSQL 15 (as ``tonewatch up`` does, default server settings but a larger
max_wal_size for the fill) in a temporary folder, removed after; with --dsn the database must be empty: it is
migrated and filled. benchmarks/store_fill.py writes the data with COPY (not measured), then VACUUM ANALYZE
stands in for autovacuum. Each query then runs --runs times, warm, on a connection that never prepares (as the
CLI and Grafana do); per-ticker ones with tickers drawn half by popularity, half uniformly (mostly quiet ones).
The Ticker dashboard's queries run for the busiest ticker over the whole month and over its default 7 days.

Prints a table, then one JSON line (the last line); EXPLAIN (ANALYZE, BUFFERS) of each query over the target, at
its slowest ticker, goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from benchmarks import store_fill as fill
from tests.dashboard_sql import expand, sql_queries
from tonewatch.store import queries
from tonewatch.store.schema import migrate

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 200.0


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[str]:
    """``dsn``, or a fresh server of our own for the run (stopped and removed after)."""
    if dsn is not None:
        yield dsn
        return
    from tonewatch.stack.postgres import start_postgres
    from tonewatch.stack.procs import stop

    with tempfile.TemporaryDirectory(prefix="tonewatch-storebench-") as tmp:
        pg = start_postgres(Path(tmp))
        try:
            with psycopg.connect(pg.dsn, autocommit=True) as conn:  # fewer checkpoints during the fill only
                conn.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
                conn.execute("SELECT pg_reload_conf()")
            yield pg.dsn
        finally:
            stop(pg.pid, timeout_s=120)


def populate(conn: psycopg.Connection[Any], args: argparse.Namespace, mix: fill.Mix, now: datetime
             ) -> dict[str, Any]:
    migrate(conn)
    t0 = time.monotonic()
    fill.fill_messages(conn, args.messages, mix, now, args.seed)
    t_messages = time.monotonic()
    fill.copy_rows(conn, "trends", fill.TREND_COLUMNS, fill.trend_rows(args.trends, mix, now, args.seed))
    fill.copy_rows(conn, "alerts", fill.ALERT_COLUMNS, fill.alert_rows(args.alerts, mix, now, args.seed))
    t_filled = time.monotonic()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    return {"fill_s": round(t_filled - t0, 1), "fill_messages_s": round(t_messages - t0, 1),
            "vacuum_analyze_s": round(time.monotonic() - t_filled, 1)}


def sizes(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}".encode()).fetchone()[0]  # type: ignore[index]
              for t in ("messages", "trends", "alerts")}
    size = conn.execute("SELECT pg_database_size(current_database()), "
                        "pg_size_pretty(pg_database_size(current_database()))").fetchone()
    assert size is not None
    return {"rows": counts, "database_bytes": size[0], "database_size": size[1]}


class Explaining:
    """Stands in for a connection: a queries.py function's SQL runs under EXPLAIN (ANALYZE, BUFFERS) instead."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn, self.plan = conn, ""

    def cursor(self, **_: Any) -> Explaining:
        return self

    def __enter__(self) -> Explaining:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def execute(self, query: str, params: Any = None) -> Explaining:
        rows = self.conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}".encode(), params).fetchall()
        self.plan = "\n".join(r[0] for r in rows)
        return self

    def fetchall(self) -> list[Any]:
        return []


Query = Callable[[Any, str], list[Any]]  # (connection or Explaining, ticker) -> rows


def timed(conn: psycopg.Connection[Any], query: Query, tickers: list[str]) -> dict[str, Any]:
    """Each run's wall time, rows fetched as the CLI fetches them included; the first run warms the cache."""
    query(conn, tickers[0])
    times, rows = [], []
    for t in tickers:
        t0 = time.perf_counter()
        rows.append(len(query(conn, t)))
        times.append((time.perf_counter() - t0) * 1000)
    ms = np.array(times)
    slowest = int(ms.argmax())
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms.max()), 1), "runs": len(ms), "rows_mean": round(float(np.mean(rows)), 1),
            "rows_max": max(rows), "slowest_ticker": tickers[slowest]}


def store_queries(now: datetime) -> dict[str, Query]:
    month, week = now - timedelta(days=30), now - timedelta(days=7)
    return {
        "ticker_trend_30d": lambda c, t: queries.ticker_trend(c, t, since=month),
        "alert_history_7d": lambda c, _: queries.alert_history(c, since=week),
        "search_messages_ticker_30d": lambda c, t: queries.search_messages(c, None, t, since=month),
    }


def panel_queries(now: datetime, days: int) -> dict[str, Query]:
    """The Ticker dashboard's SQL (panels, variable, annotations), macros expanded for the last ``days``."""
    dashboard = json.loads((REPO / "dashboards" / "json" / "ticker.json").read_text())
    out: dict[str, Query] = {}
    for where, raw in sql_queries(dashboard):
        def run(c: Any, t: str, raw: str = raw) -> list[Any]:
            # sector: All; __interval: Grafana's for the range on a 1,000-point panel (30 min for 30 days)
            text = expand(raw, now - timedelta(days=days), now,
                          {"ticker": t, "sector": "'*'", "__interval": "30m" if days >= 30 else "10m"})
            if isinstance(c, Explaining):
                return c.execute(text).fetchall()
            return c.execute(text.encode()).fetchall()
        out[f"{days}d {where}"] = run
    return out


def sample_tickers(mix: fill.Mix, n: int, seed: int) -> list[str]:
    """Half drawn by popularity (the busy ones a user looks up most), half uniformly (mostly quiet ones)."""
    rng = np.random.default_rng(seed + 3)
    busy = rng.choice(len(mix.tickers), size=n - n // 2, p=mix.weights)
    quiet = rng.choice(len(mix.tickers), size=n // 2)
    picks = np.concatenate([busy, quiet])
    rng.shuffle(picks)
    return [mix.tickers[i] for i in picks]


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'query':<58} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'rows':>9}"]
    for name, r in results.items():
        flag = "  OVER" if r["p95_ms"] > TARGET_MS else ""
        lines.append(f"{name[:58]:<58} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8} {r['rows_mean']:>9}{flag}")
    return "\n".join(lines)


def measure(conn: psycopg.Connection[Any], mix: fill.Mix, now: datetime, args: argparse.Namespace
            ) -> dict[str, dict[str, Any]]:
    tickers = sample_tickers(mix, args.runs, args.seed)
    plan = {**{n: (q, tickers) for n, q in store_queries(now).items()},
            # the busiest ticker over the month, and over the dashboard's default range (7 days)
            **{n: (q, [mix.tickers[0]] * args.panel_runs) for d in (30, 7) for n, q in panel_queries(now, d).items()}}
    results = {}
    for name, (query, sample) in plan.items():
        results[name] = timed(conn, query, sample)
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
        if results[name]["p95_ms"] > TARGET_MS:
            explaining = Explaining(conn)
            query(explaining, results[name]["slowest_ticker"])
            print(f"--- EXPLAIN {name} ({results[name]['slowest_ticker']})\n{explaining.plan}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000_000, help="scored messages over 30 days")
    parser.add_argument("--trends", type=int, default=1_000_000, help="trend windows over 30 days")
    parser.add_argument("--alerts", type=int, default=3000, help="alerts (most also resolve: about 1.9 rows each)")
    parser.add_argument("--runs", type=int, default=200, help="runs of each store query")
    parser.add_argument("--panel-runs", type=int, default=20, help="runs of each dashboard query")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dsn", help="an empty database to use instead of a server of our own")
    parser.add_argument("--no-fill", action="store_true",
                        help="with --dsn: time the queries on a database an earlier run filled (say, after an index)")
    args = parser.parse_args()
    if args.no_fill and args.dsn is None:
        parser.error("--no-fill needs --dsn")
    now = datetime.now(UTC)
    mix = fill.ticker_mix()
    t0 = time.monotonic()
    with database(args.dsn) as dsn, psycopg.connect(dsn, prepare_threshold=None) as conn:
        if args.no_fill:  # the data's month ends when it was filled: a later run's windows start a little after
            conn.autocommit = True
            figures = sizes(conn)
        else:
            figures = {**populate(conn, args, mix, now), **sizes(conn)}
        print(f"filled: {json.dumps(figures)}", file=sys.stderr, flush=True)
        results = measure(conn, mix, now, args)
    print(table(results))
    print(json.dumps({"messages": args.messages, "trends": args.trends, **figures, "target_ms": TARGET_MS,
                      "over_target": [n for n, r in results.items() if r["p95_ms"] > TARGET_MS],
                      "total_s": round(time.monotonic() - t0, 1), "queries": results}))


if __name__ == "__main__":
    main()
