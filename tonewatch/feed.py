"""Build the bundled sample feed from the committed MIT data: calm market, one negative surge.

Deterministic (seeded), so the demo and the tests see the same feed. The feed is a
committed build output of this module: ``tonewatch feed build``.
"""

from __future__ import annotations

import csv
import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data"
T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
SURGE_TICKER = "TSLA"
SURGE_START_MIN = 24
_TESLA = re.compile(r"\$TSLA\b|\bTesla\b", re.IGNORECASE)


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_feed(
    *,
    minutes: int = 40,
    surge_start: int = SURGE_START_MIN,
    surge_minutes: int = 4,
    calm_news: int = 600,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """Calm traffic over ``minutes``; negative $TSLA news and chat packed into the surge."""
    rng = random.Random(seed)
    news, chat = _rows("news_sentiment.csv"), _rows("chat_sentiment.csv")
    tesla_news = [r for r in news if _TESLA.search(r["text"])]
    other_news = [r for r in news if not _TESLA.search(r["text"])]
    tesla_chat = [r for r in chat if r["ticker"].upper() == "$TSLA"]
    other_chat = [r for r in chat if r["ticker"].upper() != "$TSLA"]

    def at(lo: float, hi: float) -> datetime:
        return T0 + timedelta(seconds=rng.uniform(lo * 60, hi * 60))

    feed: list[dict[str, Any]] = []

    def add_news(r: dict[str, str], ts: datetime, tickers: list[str] | None = None) -> None:
        item: dict[str, Any] = {"id": f"news-{r['row_id']}", "source": "news", "ts": _iso(ts), "text": r["text"]}
        if tickers:
            item["tickers"] = tickers
        feed.append(item)

    def add_chat(r: dict[str, str], ts: datetime) -> None:
        feed.append({
            "id": f"chat-{r['row_id']}", "source": "chat", "ts": _iso(ts), "text": r["text"],
            "tickers": [r["ticker"].lstrip("$").upper()],
            "author": f"user{rng.randrange(1000, 9999)}", "channel": "stocktwits",
        })

    for r in rng.sample(other_news, calm_news):
        add_news(r, at(0, minutes))
    for r in other_chat:
        add_chat(r, at(0, minutes))
    end = surge_start + surge_minutes
    for r in tesla_news:
        if r["sentiment"] == "negative":
            add_news(r, at(surge_start, end), [SURGE_TICKER])
        else:
            add_news(r, at(0, minutes), [SURGE_TICKER])
    for r in tesla_chat:
        add_chat(r, at(surge_start, end) if r["sentiment"] == "Negative" else at(0, minutes))
    feed.sort(key=lambda m: m["ts"])
    return feed


MALFORMED = [
    '{"id": "bad-1", "source": "news", "ts": "2026-01-05T14:10:00Z", "text": ',  # truncated JSON
    '{"id": "bad-2", "source": "news", "text": "Stocks rally as inflation cools"}',  # no timestamp
    '{"id": "bad-3", "source": "fax", "ts": "2026-01-05T14:20:00Z", "text": "Unknown source"}',
]


def write_feed(path: Path, feed: list[dict[str, Any]], malformed: list[str] | None = None) -> int:
    """JSONL, with the malformed examples spread through so the dead-letter path shows in the demo."""
    lines = [json.dumps(m, ensure_ascii=False) for m in feed]
    for i, bad in enumerate(malformed or []):
        lines.insert((i + 1) * len(lines) // (len(malformed or []) + 1), bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)
