"""A month of history for benchmarks/store_queries.py: scored messages, trend windows and alerts, COPYed in.

The mix is meant to look like production's: ~500 tickers with Zipf-like popularity (the real ones from
data/knowledge/companies.csv busiest), a third of messages naming no ticker, news and chat, rows written in
event-time order (as the sink writes them, so a key's rows are spread over the heap as they would be).
Trends and alerts go through tonewatch/store/rows.py, as the sink's do; messages are written as COPY text
directly, ten times faster than building 10 million records and mapping each.
"""

from __future__ import annotations

import csv
import json
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from models.labels import SENTIMENT, TOPIC
from tonewatch.feed import DATA
from tonewatch.store.rows import alerts_row, trends_row
from tonewatch.store.schema import ensure_day_partitions

TICKERS, ZIPF_S = 500, 1.1
NO_TICKER, TWO_TICKERS, CHAT = 0.3, 0.1, 0.3  # shares of messages
WINDOW_S, DAYS = 60, 30
PROFILES = 4096  # distinct (sentiment, topic) score vectors: a row picks one, JSON built once
CHUNK = 200_000
MESSAGE_COLUMNS = ("id", "ts", "source", "text", "sentiment", "p_negative", "probs", "topic", "tickers", "sectors",
                   "model_versions")
TREND_COLUMNS = ("dimension", "key", "window_start", "window_end", "count", "negative", "share", "corrected_share",
                 "baseline", "corrected_baseline", "z", "record")  # rows.py's order
ALERT_COLUMNS = ("alert_id", "status", "dimension", "key", "severity", "window_start", "window_end", "z", "reasons",
                 "top_messages", "payload")
SECTORS = ("Information Technology", "Communication Services", "Consumer Discretionary", "Consumer Staples",
           "Energy", "Financials", "Health Care", "Industrials", "Materials", "Real Estate", "Utilities")
_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """A value for PostgreSQL's COPY text format."""
    return value.translate(_ESCAPE)


@dataclass(frozen=True)
class Mix:
    tickers: list[str]
    weights: np.ndarray  # a message's chance of naming each ticker, busiest first
    sectors: dict[str, str]


def ticker_mix(n: int = TICKERS, seed: int = 7) -> Mix:
    """The committed companies first (busiest), then made-up symbols to ``n``; weights 1/rank^s."""
    with (DATA / "knowledge" / "companies.csv").open(encoding="utf-8", newline="") as fh:
        known = {r["ticker"]: r["sector"] for r in csv.DictReader(fh)}
    rng = random.Random(seed)
    tickers = list(known)
    while len(tickers) < n:
        made = "".join(rng.choices(string.ascii_uppercase, k=rng.choice((3, 4))))
        if made not in known:
            known[made] = rng.choice(SECTORS)
            tickers.append(made)
    weights = 1.0 / np.arange(1, n + 1) ** ZIPF_S
    return Mix(tickers[:n], weights / weights.sum(), known)


def _profiles(rng: np.random.Generator) -> list[tuple[str, str, str, str]]:
    """(sentiment, p_negative, probs JSON, topic) as COPY text: mostly neutral, a fat negative tail."""
    out = []
    for _ in range(PROFILES):
        sent = rng.dirichlet((1.2, 3.0, 1.8))
        topic = rng.dirichlet(np.full(len(TOPIC), 0.3))
        probs = {"sentiment": dict(zip(SENTIMENT, np.round(sent, 4).tolist(), strict=True)),
                 "topic": dict(zip(TOPIC, np.round(topic, 4).tolist(), strict=True))}
        out.append((SENTIMENT[int(sent.argmax())], f"{sent[0]:.4f}",
                    copy_text(json.dumps(probs, separators=(",", ":"), ensure_ascii=False)),
                    copy_text(TOPIC[int(topic.argmax())])))
    return out


def _texts() -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {}
    for source, name in (("news", "news_sentiment.csv"), ("chat", "chat_sentiment.csv")):
        with (DATA / name).open(encoding="utf-8", newline="") as fh:
            pools[source] = [copy_text(r["text"]) for r in csv.DictReader(fh)]
    return pools


def _array(values: list[str]) -> str:
    return "{" + ",".join(f'"{v}"' for v in values) + "}"


def message_lines(n: int, mix: Mix, now: datetime, seed: int) -> Iterator[str]:
    """``n`` messages over the ``DAYS`` before ``now`` in time order, as COPY text in chunks of lines."""
    rng = np.random.default_rng(seed)
    profiles, pools = _profiles(rng), _texts()
    versions = copy_text('{"sentiment":"3","topic":"2"}')
    start = np.datetime64(int((now - timedelta(days=DAYS)).timestamp() * 1000), "ms")
    span_ms = DAYS * 86_400_000
    for first in range(0, n, CHUNK):
        size = min(CHUNK, n - first)
        lo, hi = first * span_ms // n, (first + size) * span_ms // n
        stamps = np.datetime_as_string(start + np.sort(rng.integers(lo, hi, size)).astype("timedelta64[ms]"),
                                       unit="ms", timezone="UTC")
        names = rng.random(size)
        chosen = rng.choice(len(mix.tickers), size=(size, 2), p=mix.weights)
        chat = rng.random(size) < CHAT
        picks, texts = rng.integers(PROFILES, size=size), rng.integers(1 << 30, size=size)
        lines = []
        for i in range(size):
            tickers = ([] if names[i] < NO_TICKER else [mix.tickers[chosen[i, 0]]]) + \
                      ([mix.tickers[chosen[i, 1]]] if names[i] > 1 - TWO_TICKERS and chosen[i, 1] != chosen[i, 0]
                       else [])
            source = "chat" if chat[i] else "news"
            pool = pools[source]
            text = pool[texts[i] % len(pool)] + "".join(f" ${t}" for t in tickers)
            sentiment, p_negative, probs, topic = profiles[picks[i]]
            sectors = sorted({mix.sectors[t] for t in tickers})
            lines.append(f"m{first + i:09d}\t{stamps[i]}\t{source}\t{text}\t{sentiment}\t{p_negative}\t{probs}\t"
                         f"{topic}\t{_array(tickers)}\t{_array(sectors)}\t{versions}\n")
        yield "".join(lines)


def fill_messages(conn: psycopg.Connection[Any], n: int, mix: Mix, now: datetime, seed: int) -> None:
    """The day partitions first (the writer's own function), then one COPY, then the volume rollup the sink
    keeps as it writes (tonewatch/store/writer.py), counted once as migration 0006 does."""
    first = (now - timedelta(days=DAYS)).date()
    ensure_day_partitions(conn, {first + timedelta(days=d) for d in range(DAYS + 1)})
    with conn.cursor() as cur, cur.copy(copy_sql("messages", MESSAGE_COLUMNS)) as copy:
        for chunk in message_lines(n, mix, now, seed):
            copy.write(chunk)
    conn.execute("INSERT INTO ticker_volume (ticker, minute, source, messages) SELECT t, date_trunc('minute', m.ts), "
                 "m.source, count(*) FROM messages m, unnest(m.tickers) AS t GROUP BY 1, 2, 3")
    conn.commit()


def _keys(mix: Mix) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Every trend key and its share of messages: a message counts once per ticker, sector, topic, source."""
    keys = [("ticker", t) for t in mix.tickers] + [("sector", s) for s in SECTORS] + \
           [("topic", t) for t in TOPIC] + [("source", s) for s in ("news", "chat")]
    sector_share = {s: 0.0 for s in SECTORS}
    for t, w in zip(mix.tickers, mix.weights, strict=True):
        sector_share[mix.sectors[t]] += w * (1 - NO_TICKER)
    rates = np.concatenate([mix.weights * (1 - NO_TICKER), [sector_share[s] for s in SECTORS],
                            np.full(len(TOPIC), 1 / len(TOPIC)), [1 - CHAT, CHAT]])
    return keys, rates


def trend_windows(n: int, mix: Mix, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``n`` (key index, minute, messages) windows: a key has a window in a minute that brought it a message,
    a Poisson chance at the message rate that makes ``n`` windows in all; sorted by minute."""
    keys, rates = _keys(mix)
    minutes = DAYS * 86_400 // WINDOW_S
    if n > len(keys) * minutes:
        raise ValueError(f"at most {len(keys) * minutes} trend windows fit {DAYS} days of {len(keys)} keys")
    lo, hi = 0.0, 1e9
    for _ in range(100):  # the messages per minute that gives n occupied windows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if minutes * (1 - np.exp(-mid * rates)).sum() < n else (lo, mid)
    counts = np.round(minutes * (1 - np.exp(-hi * rates))).astype(int)
    out = []
    for k, c in enumerate(counts):
        for m in rng.choice(minutes, size=min(int(c), minutes), replace=False):
            out.append((k, int(m), 1 + int(rng.poisson(hi * rates[k]))))
    out.sort(key=lambda w: w[1])
    return out[:n]


def trend_rows(n: int, mix: Mix, now: datetime, seed: int) -> Iterator[tuple[Any, ...]]:
    """Trend records as the windows agent writes them (streams/windows/trends.py), mapped as the sink maps them."""
    rng = np.random.default_rng(seed + 1)
    keys, _ = _keys(mix)
    start = int((now - timedelta(days=DAYS)).timestamp()) // WINDOW_S * WINDOW_S
    for k, minute, count in trend_windows(n, mix, rng):
        negative = int(rng.binomial(count, 0.2))
        share, baseline = negative / count, float(rng.uniform(0.15, 0.25))
        ws = start + minute * WINDOW_S
        yield trends_row({"dimension": keys[k][0], "key": keys[k][1], "window_start": ws,
                          "window_end": ws + WINDOW_S, "count": count, "negative": negative,
                          "negative_share": round(share, 6), "p_negative_sum": round(count * 0.22, 6),
                          "baseline": round(baseline, 6), "corrected_share": round(share, 6),
                          "corrected_baseline": round(baseline, 6), "adjusted_sum": float(negative),
                          "alerting": False})


def alert_rows(n: int, mix: Mix, now: datetime, seed: int) -> Iterator[tuple[Any, ...]]:
    """``n`` alerts on tickers (busy ones more often), each firing and, nine in ten, resolved."""
    rng = np.random.default_rng(seed + 2)
    start = int((now - timedelta(days=DAYS)).timestamp())
    for i in range(n):
        key = mix.tickers[int(rng.choice(len(mix.tickers), p=mix.weights))]
        ws = (start + int(rng.integers(DAYS * 86_400))) // WINDOW_S * WINDOW_S
        window = {"start": _iso(ws), "end": _iso(ws + WINDOW_S), "seconds": WINDOW_S}
        top = [{"message_id": f"m-{i}-{j}", "text": f"${key} slides after guidance cut, analysts turn cautious",
                "source": "news", "p_negative": 0.93, "tickers": [key]} for j in range(5)]
        alert = {"id": f"a{i:07d}", "status": "firing", "dimension": "ticker", "key": key, "severity": "warning",
                 "reason": "share", "window": window, "volume": 40, "negative": 25, "negative_share": 0.625,
                 "baseline": 0.2, "corrected_share": 0.6, "corrected_baseline": 0.2, "score": 5.2,
                 "top_messages": top, "model_versions": {"sentiment": "3"}, "at": window["end"],
                 "dashboard_url": f"http://localhost:3000/d/ticker?var-key={key}"}
        yield alerts_row(alert)
        if rng.random() < 0.9:
            yield alerts_row({**alert, "status": "resolved"})


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def copy_sql(table: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table),
                                                    sql.SQL(", ").join(map(sql.Identifier, columns)))


def copy_rows(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...],
              rows: Iterator[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(copy_sql(table, columns)) as copy:
        for row in rows:
            copy.write_row(row)
    conn.commit()
