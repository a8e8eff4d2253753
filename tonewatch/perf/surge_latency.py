"""Surge-to-alert latency: a negative surge injected into a steady open-loop feed, timed to the alert and its webhook.

Event time is the intended send time, as in a live feed, so windows close by the watermark as in production.
The time from the first surging message's intended send to the alert splits into parts, each from record
timestamps on the same machine's clock:

- ``close_wait_s``: until the firing window closes (its end plus the allowed lateness, event time = wall time);
- ``scoring_s``: from that close until the trend-events record whose marks took the watermark of the key's
  partition past it was written (the next message produced, read, scored and its partials sent);
- ``windows_s``: from that record to the alert record (the windows agent folding, closing and judging);
- ``notifier_s``: from the alert record to the webhook's arrival at a local receiver (includes the
  notifier's ``incident_settle_s``, reported with it).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import SecretStr

from streams.windows.watermark import Mark, Watermarks
from tonewatch.core.kafka_io import ensure_topics, iter_topic, producer
from tonewatch.core.settings import Settings
from tonewatch.core.topics import NAMES
from tonewatch.perf.openloop import Outgoing, encode, new_run_id, schedule, send_on_schedule, wait_caught_up

TICKER = "ZQX"  # a cashtag no real feed uses: its key sees only this feed
CALM = (f"${TICKER} ships its new product line on schedule", f"${TICKER} holds its annual meeting in Boston",
        f"${TICKER} shares slump in early trade")  # one calm text in ten is negative ("slump")
SURGE = (f"${TICKER} plunge deepens as fraud lawsuit widens", f"${TICKER} recall adds to loss, shares crash",
         f"${TICKER} names a new chief financial officer")  # four surging texts in five are negative
CLOSE_TO_ALERT_TARGET_S = 2.0  # issue 32: alert <= window close + 2 s


@dataclass(frozen=True)
class SurgePlan:
    """Wall-clock (= event-time) bounds of the feed: calm from ``start``, surge in whole windows, calm after."""

    start: float
    surge_start: float
    surge_end: float
    end: float


def plan_surge(start: float, window_s: int, *, warm_windows: int = 3, surge_windows: int = 3,
               tail_s: float = 30.0) -> SurgePlan:
    """The surge starts on a window boundary after ``warm_windows`` whole calm windows (the first, partial window
    comes on top), so its windows are surge alone; ``tail_s`` of calm feed after it at most."""
    if warm_windows < 0 or surge_windows < 1 or window_s < 1:
        raise ValueError("need warm_windows >= 0, surge_windows >= 1 and window_s >= 1")
    surge_start = math.ceil(start / window_s) * window_s + warm_windows * window_s
    surge_end = surge_start + surge_windows * window_s
    return SurgePlan(start, surge_start, surge_end, surge_end + tail_s)


def surge_text(i: int, surging: bool) -> str:
    """The ``i``-th message's text: 80 % negative during the surge, 10 % before and after (the trivial models
    call a text negative by its keywords, benchmarks/trivial_repo)."""
    if surging:
        return SURGE[2] if i % 5 == 0 else SURGE[i % 2]
    return CALM[2] if i % 10 == 0 else CALM[i % 2]


def surge_feed(plan: SurgePlan, rate: float, run: str) -> list[Outgoing]:
    times = schedule(rate, plan.end - plan.start, plan.start)
    return [encode(f"surge-{run}-{i}", t, surge_text(i, plan.surge_start <= t < plan.surge_end))
            for i, t in enumerate(times)]


def watermark_passed(records: Iterable[tuple[float, Mapping[str, Mark], Iterable[str]]], close: float
                     ) -> float | None:
    """The time of the first trend-events record (time, marks, inputs), in partition order, after which the
    partition's watermark (streams/windows/watermark.py) reaches ``close``; None if none does."""
    marks = Watermarks()
    for ts, heard, inputs in records:
        marks.hear(heard, inputs)
        reached = marks.watermark()
        if reached is not None and reached >= close:
            return ts
    return None


def alert_parts(first_surge: float, close_at: float, moved_at: float | None, alert_at: float,
                webhook_at: float | None) -> dict[str, float | bool | None]:
    """The surge-to-alert time and its parts, in seconds (see the module's docstring)."""
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    close_to_alert = alert_at - close_at
    return {
        "to_alert_s": r(alert_at - first_surge),
        "to_webhook_s": r(None if webhook_at is None else webhook_at - first_surge),
        "close_wait_s": r(close_at - first_surge),
        "scoring_s": r(None if moved_at is None else moved_at - close_at),
        "windows_s": r(None if moved_at is None else alert_at - moved_at),
        "notifier_s": r(None if webhook_at is None else webhook_at - alert_at),
        "close_to_alert_s": r(close_to_alert),
        "close_to_alert_target_met": close_to_alert <= CLOSE_TO_ALERT_TARGET_S,
    }


def first_firing(alerts: Iterable[tuple[float, dict[str, Any]]], key: str = TICKER
                 ) -> tuple[float, dict[str, Any]] | None:
    """The first firing alert of ticker ``key``: (record time, payload)."""
    return next(((ts, a) for ts, a in alerts
                 if a.get("dimension") == "ticker" and a.get("key") == key and a.get("status") == "firing"), None)


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- against a running worker and an in-process notifier ---------------------------------------------------------


class Receiver:
    """A local webhook endpoint: when each incident version arrived, and its alerts' ids."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, list[tuple[str, str]]]] = []  # (arrived, [(alert id, dimension|key)])
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                children = [(c.get("id", ""), f"{c.get('dimension')}|{c.get('key')}") for c in body.get("children", [])]
                posts.append((time.time(), children))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/surge"

    def first(self, alert_id: str | None = None, key: str | None = None) -> float | None:
        """When the first incident holding alert ``alert_id``, or an alert of state key ``key``, arrived."""
        return next((t for t, children in self.posts
                     if any(alert_id in (None, a) and key in (None, k) for a, k in children)), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _notifier(s: Settings, receiver: Receiver) -> tuple[threading.Thread, threading.Event]:
    """The notifier in-process (as ``tonewatch alerts bench`` runs it), subscribed by webhook to ``receiver``."""
    from tonewatch.notify.ledger import ensure_delivery_topics
    from tonewatch.notify.metrics import create_notifier_metrics
    from tonewatch.notify.notifier import Notifier
    from tonewatch.notify.store import save_subscription
    from tonewatch.notify.subscriptions import new_subscription

    ensure_delivery_topics(s)
    save_subscription(s, new_subscription(kind="webhook", url=receiver.url))
    stop = threading.Event()
    thread = threading.Thread(target=Notifier(s, create_notifier_metrics()).run, args=(stop.is_set,), daemon=True)
    thread.start()
    return thread, stop


def surge_settings(settings: Settings, window_s: int, lateness_s: int) -> Settings:
    from tonewatch.notify.egress import LOOPBACK

    # a future event time must stay below the lateness (Settings checks it); the feed's are never ahead
    return settings.updated(detector__window_s=window_s, detector__allowed_lateness_s=lateness_s,
                            scoring__max_future_s=min(settings.scoring.max_future_s, lateness_s / 2),
                            delivery__allowed_networks=LOOPBACK,  # the receiver is on 127.0.0.1
                            delivery__webhook_secret=settings.delivery.webhook_secret or SecretStr("bench"),
                            delivery__metrics_port=0)


def _moved_at(s: Settings, close_at: float) -> float | None:
    """When the score stage wrote the record that took the surge key's trend-events partition past ``close_at``."""
    from streams.score.outbox import partition_for
    from streams.windows.fold import decode_record

    part = partition_for(f"ticker|{TICKER}".encode(), list(range(s.kafka.topic_partitions)))
    records = ((r.timestamp / 1000, rec.marks, rec.inputs)
               for r in iter_topic(s.kafka, s.kafka.topic("trend-events")) if r.partition == part
               for rec in [decode_record(r.value)])
    return watermark_passed(records, close_at)


def _feed(s: Settings, plan: SurgePlan, rate: float, receiver: Receiver) -> int:
    """The steady feed with its surge; stops once after the surge the webhook has brought an incident."""
    prod = producer(s.kafka)
    try:
        msgs = surge_feed(plan, rate, new_run_id())

        def alerted() -> bool:
            return receiver.first(key=f"ticker|{TICKER}") is not None
        return len(send_on_schedule(prod, s.kafka.topic("news"), msgs, stop=alerted))
    finally:
        prod.close()


def run_surge(settings: Settings, start_worker: Any, *, rate: float = 40.0, window_s: int = 10,
              lateness_s: int = 2, warm_windows: int = 3, surge_windows: int = 3) -> dict[str, Any]:
    """Start a notifier and a worker with ``window_s``/``lateness_s`` on fresh topics, feed calm, surge, calm;
    returns the surge-to-alert time and its parts."""
    s = surge_settings(settings, window_s, lateness_s)
    ensure_topics(s.kafka, [s.kafka.topic(t) for t in NAMES])
    receiver = Receiver()
    thread, stop = _notifier(s, receiver)
    try:
        start_worker(s)
        warm = producer(s.kafka)
        send_on_schedule(warm, s.kafka.topic("news"), [encode(f"surge-warmup-{new_run_id()}", time.time(), CALM[0])])
        warm.close()
        wait_caught_up(s, 300)  # worker start-up and its first Triton call are not the surge's latency
        tail = 2 * window_s + lateness_s + s.delivery.incident_settle_s + 20
        plan = plan_surge(time.time() + 1, window_s, warm_windows=warm_windows, surge_windows=surge_windows,
                          tail_s=tail)
        sent = _feed(s, plan, rate, receiver)
    finally:
        stop.set()
        thread.join(timeout=30)
        receiver.close()
    alerts = iter_topic(s.kafka, s.kafka.topic("alerts"))
    found = first_firing((r.timestamp / 1000, json.loads(r.value)) for r in alerts)
    result: dict[str, Any] = {
        "window_s": window_s, "allowed_lateness_s": lateness_s, "incident_settle_s": s.delivery.incident_settle_s,
        "feed_msgs_per_s": rate, "warm_windows": warm_windows, "surge_windows": surge_windows, "messages": sent,
        "surge_negative_share": 0.8, "calm_negative_share": 0.1, "alerted": found is not None,
    }
    if found is None:
        return result
    alert_at, alert = found
    close_at = parse_iso(alert["window"]["end"]) + lateness_s
    result["fired_window"] = round((parse_iso(alert["window"]["start"]) - plan.surge_start) / window_s) + 1
    result.update(alert_parts(plan.surge_start, close_at, _moved_at(s, close_at), alert_at,
                              receiver.first(alert["id"])))
    return result
