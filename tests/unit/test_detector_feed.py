"""The bundled sample feed through the detector, the dataset's labels standing in for Triton's sentiment.

The integration test checks the same with the real model; this one runs in a second without a broker,
so a detector change that would break the demo's single TSLA alert fails here first.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

from streams.enrich import extract_tickers
from streams.knowledge import load_knowledge
from streams.windows.detector import KeyState, Transition, TrendEvent, apply_event
from tonewatch.core.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "data"


def labels() -> dict[str, bool]:
    out: dict[str, bool] = {}
    for name, prefix in (("news_sentiment.csv", "news-"), ("chat_sentiment.csv", "chat-")):
        with (DATA / name).open(encoding="utf-8", newline="") as fh:
            out.update({prefix + r["row_id"]: r["sentiment"].lower() == "negative" for r in csv.DictReader(fh)})
    return out


def test_sample_feed_fires_one_ticker_alert_for_tsla_and_resolves_it() -> None:
    negative, knowledge = labels(), load_knowledge()
    cfg = Settings().updated(detector__allowed_lateness_s=600).detector  # one key at a time: room for the disorder
    states: dict[tuple[str, str], KeyState] = {}
    out: list[tuple[str, str, Transition]] = []
    for line in (DATA / "sample_feed.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            continue  # the feed's deliberately malformed lines: the worker dead-letters them
        if "ts" not in m or m["id"] not in negative:
            continue
        ts = datetime.fromisoformat(m["ts"].replace("Z", "+00:00")).timestamp()
        tickers = extract_tickers(m["text"], tuple(m.get("tickers", ())), knowledge.tickers_in(m["text"]), most=20)
        keys = [("ticker", t) for t in tickers] + [("source", m["source"])]
        for dim, key in keys:
            ev = TrendEvent(dim, key, ts, negative[m["id"]], 0.9, m["id"], m["text"], m["source"])
            u = apply_event(states.get((dim, key), KeyState()), ev, cfg)
            assert u.accepted
            states[(dim, key)] = u.state
            out += [(dim, key, t) for t in u.transitions]
    ticker = [(key, t.status) for dim, key, t in out if dim == "ticker"]
    assert ticker == [("TSLA", "firing"), ("TSLA", "resolved")]
