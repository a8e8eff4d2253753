"""The walking skeleton end to end: replay → Kafka → worker → Triton → scored / dead-letter / alerts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from models.artifact import prevalence_rates
from streams.score.rates import RatesBook
from streams.windows.prevalence import adjusted
from tests.integration.conftest import REPO, Worker, wait_for, wait_watermark
from tonewatch.core.kafka_io import producer, read_json
from tonewatch.core.settings import Settings
from tonewatch.replay import replay

pytestmark = pytest.mark.integration

HEADLINES = [
    ("n1", "news", "$TSLA shares plunge after Tesla recalls 2 million cars over safety defects"),
    ("n2", "news", "Apple reports record quarterly revenue, beats estimates"),
    ("c1", "chat", "$AAPL to the moon, call me at 415-555-0134 or mail me at joe@example.com"),
    ("n3", "news", "Fed holds rates steady, signals patience on cuts"),
]


def _line(i: str, source: str, text: str, minute: int = 0) -> str:
    return json.dumps({"id": i, "source": source, "ts": f"2026-01-05T14:{minute:02d}:00Z", "text": text})


def _maybe_json(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def test_messages_are_scored_by_triton_and_bad_ones_dead_lettered(
    pipeline: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = pipeline()
    s = worker.settings
    feed = tmp_path / "feed.jsonl"
    lines = [_line(*h) for h in HEADLINES]
    lines.insert(1, '{"id": "bad-json", ')
    lines.insert(3, json.dumps({"id": "no-ts", "source": "news", "text": "missing timestamp"}))
    feed.write_text("\n".join(lines) + "\n")
    assert replay(s, feed).sent == 6

    scored = wait_for(s, "scored", 4, worker)
    dead = wait_for(s, "dead-letter", 2, worker)
    assert sorted(r["id"] for r in scored) == ["c1", "n1", "n2", "n3"]
    for r in scored:
        assert set(r["sentiment_probs"]) == {"negative", "neutral", "positive"}
        assert sum(r["sentiment_probs"].values()) == pytest.approx(1.0, abs=1e-3)
        assert len(r["topic_probs"]) == 20
        assert r["model_versions"] == {"sentiment": "1", "topic": "1"}
    by_id = {r["id"]: r for r in scored}
    assert by_id["n1"]["sentiment"] == "negative" and by_id["n1"]["tickers"] == ["TSLA"]
    assert by_id["n2"]["tickers"] == ["AAPL"] and by_id["n2"]["sectors"] == ["Information Technology"]
    assert "555-0134" not in by_id["c1"]["text"] and "joe@example.com" not in by_id["c1"]["text"]
    reasons = sorted(d["reason"] for d in dead)
    assert reasons[0].startswith("invalid field 'ts'") and reasons[1].startswith("not JSON")
    assert {d["stage"] for d in dead} == {"validate"}
    assert all(d["topic"] == s.kafka.topic("news") and d["offset"] is not None for d in dead)

    # the worker survives bad input and keeps scoring what comes after it
    prod = producer(s.kafka)
    prod.send(s.kafka.topic("news"), b"\xff\xfe not utf-8")
    prod.send(s.kafka.topic("news"), _line("n4", "news", "Oil prices slump as demand fears grow").encode())
    prod.flush()
    prod.close()
    assert any(r["id"] == "n4" for r in wait_for(s, "scored", 5, worker))
    dead = wait_for(s, "dead-letter", 3, worker)
    # not UTF-8: cannot be masked, so the dead letter holds no copy; the record stays at its offset
    assert any(d["payload"] is None and d["reason"].startswith("not UTF-8") for d in dead)
    assert worker.alive()

    m = worker.metrics()
    assert m['tonewatch_messages_scored_total{source="news"}'] == 4
    assert m['tonewatch_messages_scored_total{source="chat"}'] == 1
    assert m['tonewatch_dead_letter_total{stage="validate"}'] == 3
    assert m[f'tonewatch_messages_in_total{{topic="{s.kafka.topic("news")}"}}'] == 7
    assert m["tonewatch_inference_seconds_count{}"] >= 1
    time.sleep(6)  # the lag gauge refreshes every 5 s
    lags = {k: v for k, v in worker.metrics().items() if k.startswith("tonewatch_consumer_lag")}
    assert any(s.kafka.topic("news") in k for k in lags) and all(v >= 0 for v in lags.values()), lags


def test_sample_feed_surge_raises_one_alert_for_the_surging_ticker_only(pipeline: Callable[..., Worker]) -> None:
    worker = pipeline()  # the default lateness: event time is judged per partition, whatever the replay speed
    s = worker.settings
    sent = replay(s, REPO / "data" / "sample_feed.jsonl", speed=120).sent
    wait_for(s, "scored", sent - 3, worker, timeout_s=600)
    wait_watermark([worker], last_event_time(s))  # the feed's partitions idle: every window that can close has
    dead = read_json(s.kafka, s.kafka.topic("dead-letter"))
    assert len(dead) == 3 and {d["stage"] for d in dead} == {"validate"}, [d["reason"] for d in dead]

    out = subprocess.run(
        [sys.executable, "-m", "tonewatch", "alerts", "tail", "--per-key", "--json"],  # no notifier: no incidents
        env={"TONEWATCH_KAFKA__BOOTSTRAP": s.kafka.bootstrap, "TONEWATCH_KAFKA__TOPIC_PREFIX": s.kafka.topic_prefix,
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, cwd=REPO, check=True,
    )
    alerts = [json.loads(line) for line in out.stdout.splitlines()]
    ticker_firing = [a for a in alerts if a["dimension"] == "ticker" and a["status"] == "firing"]
    assert [a["key"] for a in ticker_firing] == ["TSLA"], alerts
    alert = ticker_firing[0]
    assert alert["severity"] in {"warning", "critical"}
    assert alert["negative_share"] > alert["baseline"] + 0.25
    # v1's manifest has error rates: the alert's true-share estimate is its own figure, not the counted one
    assert 0 <= alert["corrected_share"] <= 1 and alert["corrected_share"] != alert["negative_share"]
    top = alert["top_messages"]
    assert len(top) == min(alert["negative"], 5), alert
    assert all(m["p_negative"] > 1 / 3 for m in top)
    feed = [m for m in map(_maybe_json, (REPO / "data" / "sample_feed.jsonl").read_text().splitlines()) if m]
    tsla = {m["id"] for m in feed if "TSLA" in m.get("tickers", []) or "$TSLA" in m["text"].upper()}
    assert {m["message_id"] for m in top} <= tsla, top
    assert [m["p_negative"] for m in top] == sorted((m["p_negative"] for m in top), reverse=True)
    assert alert["model_versions"] == {"sentiment": "1", "topic": "1"}
    assert {"id", "status", "dimension", "key", "severity", "window", "volume", "score"} <= set(alert)

    assert_trends_match_offline(s, lateness_s=s.detector.allowed_lateness_s)


def last_event_time(s: Settings) -> float:
    """The latest event time scored: the watermark once every input partition is idle."""
    return max(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()
               for r in read_json(s.kafka, s.kafka.topic("scored")))


def assert_trends_match_offline(s: Settings, lateness_s: int) -> None:
    """Every closed window in the trends topic equals a pandas group-by over the scored topic."""
    import pandas as pd

    rows = []
    book = RatesBook(s.triton.model_repository, s.triton.sentiment_model, prevalence_rates)
    for r in read_json(s.kafka, s.kafka.topic("scored")):
        ts = pd.Timestamp(r["ts"]).timestamp()
        keys = [("ticker", t) for t in r["tickers"]] + [("sector", x) for x in r["sectors"]]
        negative = r["sentiment"] == "negative"
        rates = book.rates(r["model_versions"].get(s.triton.sentiment_model), r["source"])
        adj = adjusted(r["sentiment_probs"].get("negative", 0.0), negative, rates)
        for dim, key in [*keys, ("topic", r["topic"]), ("source", r["source"])]:
            rows.append({"dimension": dim, "key": key, "ts": ts, "negative": negative, "adjusted": adj})
    df = pd.DataFrame(rows)
    df["window_start"] = (df["ts"] // s.detector.window_s) * s.detector.window_s
    offline = df.groupby(["dimension", "key", "window_start"]).agg(
        count=("ts", "size"), negative=("negative", "sum"), adjusted_sum=("adjusted", "sum"))
    trends = pd.DataFrame(read_json(s.kafka, s.kafka.topic("trends"))).set_index(["dimension", "key", "window_start"])
    assert trends.index.is_unique  # each window is published once
    joined = trends.join(offline, rsuffix="_offline", how="left")
    assert (joined["count"] == joined["count_offline"]).all()
    assert (joined["negative"] == joined["negative_offline"]).all()
    # the corrected share: each message adjusted with its own version's and source's error rates
    assert ((joined["adjusted_sum"] - joined["adjusted_sum_offline"]).abs() < 1e-5).all()
    want = (joined["adjusted_sum_offline"] / joined["count_offline"]).clip(0, 1)
    assert ((joined["corrected_share"] - want).abs() < 1e-5).all()
    # the rolling view of each record is the sum of the offline windows inside its span
    span = max(s.detector.rolling_s, s.detector.window_s)
    for (dim, key, start), row in trends.iterrows():
        mine = offline.xs((dim, key))
        inside = mine[(mine.index >= start + s.detector.window_s - span) & (mine.index <= start)]
        rolled = (row["rolling"]["count"], row["rolling"]["negative"])
        assert rolled == (inside["count"].sum(), inside["negative"].sum())
    # and every window the watermark (the feed's last event time, once its partitions idle) has passed by the
    # lateness was published
    closed = offline.reset_index()
    closed = closed[closed["window_start"] + s.detector.window_s + lateness_s <= df["ts"].max()]
    assert set(map(tuple, closed[["dimension", "key", "window_start"]].values)) == set(trends.index)
