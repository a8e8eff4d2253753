"""A short, seeded JSONL feed for the event-time tests: steady mixed traffic, two negative surges, late messages.

Twenty minutes of event time over six tickers: each gets about two news headlines and two chat messages a
minute of mixed sentiment (about 20 % negative). Two surges of clearly negative wording (the sample feed's
patterns: "shares plummet", "stock falls again", "looking pretty sucky") multiply a ticker's volume by five
for three minutes, 14 of each 16 extra messages negative: Boeing in the news, Netflix in chat only. One
spike of 30 negative Exxon headlines inside one minute, straddling two windows, must raise nothing. Models v1
read every template as its intended sentiment, by a margin of at least 0.6 in probability, so batching never
flips a label. Six neutral messages are late by design: each carries an event time 30 minutes behind the
message before it in the file, so its input partition has long passed it (120 s of lateness are allowed).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
MINUTES = 20
COMPANIES = {"AAPL": "Apple", "MSFT": "Microsoft", "JPM": "JPMorgan", "XOM": "Exxon", "BA": "Boeing",
             "NFLX": "Netflix"}
BACKGROUND_PER_MINUTE = 2  # per ticker and source
SENTIMENTS, MIX = ["negative", "neutral", "positive"], [0.2, 0.45, 0.35]
SURGE_EXTRA_PER_MINUTE, SURGE_NEGATIVE_PER_MINUTE = 16, 14  # 5x the ticker's volume, 87.5 % negative
LATE_COUNT, LATE_BEHIND = 6, timedelta(minutes=30)


@dataclass(frozen=True)
class Surge:
    ticker: str
    source: str
    start_min: int
    minutes: int = 3

    def window_starts(self, before_min: float = MINUTES) -> list[float]:
        """Epoch starts of the surge's one-minute windows that begin before ``before_min``."""
        return [(T0 + timedelta(minutes=m)).timestamp() for m in range(self.start_min, self.start_min + self.minutes)
                if m < before_min]


SURGES = (Surge("BA", "news", 11), Surge("NFLX", "chat", 15))
SPIKE_TICKER, SPIKE_AT, SPIKE_NEGATIVES = "XOM", timedelta(minutes=6, seconds=20), 30  # within 60 s from SPIKE_AT

NEWS = {
    "negative": [
        "{name} shares plummet as it delays deliveries over a safety probe",
        "{name}'s stock falls again, extends pullback to {n}%",
        "{name} slumped in pre-market trading after a disappointing quarter",
        "{name} shares tumble after regulators open a probe",
        "{name} falls more than {n}% after it cuts its full-year outlook",
        "{name} -{n}% as China slowdown factors in",
    ],
    "neutral": [
        "{name} to present at an investor conference next week",
        "{name} schedules its quarterly earnings call",
        "What to watch when {name} reports earnings",
        "{name} to hold its annual shareholder meeting in May",
    ],
    "positive": [
        "{name} shares jump after record quarterly revenue",
        "{name} beats estimates and raises its full-year outlook",
        "Analysts upgrade {name} to buy on strong demand",
    ],
}
CHAT = {
    "negative": [
        "${t} looks like it will be red again today, ugly chart",
        "I'm no chartist, but isn't ${t} looking pretty sucky right now?",
        "${t} down bad, a break of support leads to uncharted territory. This could get ugly",
        "people will lose their life savings in ${t}, dumping all my shares",
    ],
    "neutral": [
        "anyone watching ${t} today?",
        "holding my ${t} position until earnings",
        "anyone have the ${t} earnings date?",
    ],
    "positive": [
        "${t} to the moon, great quarter",
        "bought more ${t} today, love this chart",
        "${t} breaking out, strong buy",
    ],
}


@dataclass(frozen=True)
class EventTimeFeed:
    lines: list[str]  # the JSONL lines, in file order
    late_ids: list[str]  # the late-by-design messages, sorted
    surges: tuple[Surge, ...] = SURGES


def _message(rng: random.Random, source: str, ticker: str, sentiment: str, ts: datetime) -> dict[str, Any]:
    template = rng.choice((NEWS if source == "news" else CHAT)[sentiment])
    text = template.format(name=COMPANIES[ticker], t=ticker, n=rng.randrange(3, 12))
    msg: dict[str, Any] = {"source": source, "ts": ts, "text": text, "tickers": [ticker]}
    if source == "chat":
        msg.update(author=f"user{rng.randrange(1000, 9999)}", channel="stocktwits")
    return msg


def _traffic(rng: random.Random) -> list[dict[str, Any]]:
    """Background for every ticker and source, then the surges' extra messages; in event-time order."""
    out = []
    for ticker in COMPANIES:
        for source in ("news", "chat"):
            for _ in range(BACKGROUND_PER_MINUTE * MINUTES):
                ts = T0 + timedelta(seconds=rng.uniform(0, MINUTES * 60))
                out.append(_message(rng, source, ticker, rng.choices(SENTIMENTS, MIX)[0], ts))
    for surge in SURGES:
        for minute in range(surge.start_min, surge.start_min + surge.minutes):
            for i in range(SURGE_EXTRA_PER_MINUTE):
                sentiment = "negative" if i < SURGE_NEGATIVE_PER_MINUTE else rng.choice(["neutral", "positive"])
                ts = T0 + timedelta(minutes=minute, seconds=rng.uniform(0, 60))
                out.append(_message(rng, surge.source, surge.ticker, sentiment, ts))
    for i in range(SPIKE_NEGATIVES):
        ts = T0 + SPIKE_AT + timedelta(seconds=i * 59 / SPIKE_NEGATIVES)
        out.append(_message(rng, "news", SPIKE_TICKER, "negative", ts))
    return sorted(out, key=lambda m: m["ts"])


def _insert_late(rng: random.Random, msgs: list[dict[str, Any]]) -> set[int]:
    """Neutral messages put between minutes 5 and 18 of the file, each 30 minutes behind the message
    before it; returns their positions."""
    lo = next(i for i, m in enumerate(msgs) if m["ts"] >= T0 + timedelta(minutes=5))
    hi = next(i for i, m in enumerate(msgs) if m["ts"] >= T0 + timedelta(minutes=18))
    spots = sorted(rng.sample(range(lo, hi), LATE_COUNT), reverse=True)  # from the end: earlier spots stay put
    for spot in spots:
        source, ticker = rng.choice(["news", "chat"]), rng.choice(list(COMPANIES))
        msgs.insert(spot, _message(rng, source, ticker, "neutral", msgs[spot - 1]["ts"] - LATE_BEHIND))
    return {spot + k for k, spot in enumerate(sorted(spots))}


def build_event_time_feed(seed: int = 11) -> EventTimeFeed:
    """The feed, deterministic for a seed; ids are ``<source>-<position in the file>``, late ones included."""
    rng = random.Random(seed)
    msgs = _traffic(rng)
    late_at = _insert_late(rng, msgs)
    lines, late_ids = [], []
    for i, m in enumerate(msgs):
        record = {"id": f"{m['source']}-{i:04d}", **m, "ts": m["ts"].isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z")}
        lines.append(json.dumps(record, ensure_ascii=False))
        if i in late_at:
            late_ids.append(record["id"])
    return EventTimeFeed(lines, sorted(late_ids))


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def split_at_minute(feed: EventTimeFeed, minute: float) -> tuple[list[str], list[str]]:
    """The lines before the first on-time message at or after ``minute`` of event time, and the rest."""
    cut = T0 + timedelta(minutes=minute)
    late = set(feed.late_ids)
    for i, line in enumerate(feed.lines):
        msg = json.loads(line)
        if msg["id"] not in late and datetime.fromisoformat(msg["ts"].replace("Z", "+00:00")) >= cut:
            return feed.lines[:i], feed.lines[i:]
    return feed.lines, []
