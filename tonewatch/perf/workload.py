"""The bench's workload: real headlines with fresh ids and recent event times (tonewatch bench, the sink's bench)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from typing import Any

from tonewatch.feed import DATA

__all__ = ["bench_messages"]


def _texts() -> list[str]:
    with (DATA / "news_sentiment.csv").open(encoding="utf-8", newline="") as fh:
        return [r["text"] for r in csv.DictReader(fh)]


def bench_messages(n: int, run: str = "") -> list[dict[str, Any]]:
    """Real headlines, cycled to ``n``, event times spread over the last few minutes.

    Ids carry ``run``: the worker skips ids it has scored, so a second run on the same topics needs new ones.
    """
    texts = _texts()
    now = datetime.now(UTC)
    return [
        {"id": f"bench-{run}-{i}", "source": "news", "text": texts[i % len(texts)],
         "ts": (now - timedelta(seconds=(n - i) * 180 / n)).isoformat().replace("+00:00", "Z")}
        for i in range(n)
    ]
