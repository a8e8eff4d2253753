"""``make demo``: the whole path on the local stack, narrated for a newcomer."""

from __future__ import annotations

import collections
import json
import secrets
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka.consumer import KafkaConsumer
from kafka.structs import TopicPartition
from pydantic import SecretStr

from tonewatch.alerts_cli import format_incident
from tonewatch.core.kafka_io import READER, client_config
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INCIDENTS
from tonewatch.feed import SURGE_START_MIN
from tonewatch.notify.sink import WebhookSink
from tonewatch.notify.store import save_subscription
from tonewatch.notify.subscriptions import new_subscription
from tonewatch.replay import outputs_since, replay, wait_for_pipeline
from tonewatch.report.read import report_from_topics
from tonewatch.stack import down, up
from tonewatch.stack.state import StackState

REPORT_DIR = Path("reports/demo")


def _assign(consumer: KafkaConsumer, topics: list[str], assigned: list[TopicPartition]) -> None:
    """Read from the beginning the topics that exist by now (the notifier creates the incidents topic)."""
    consumer.topics()  # refreshes the metadata
    new = [TopicPartition(t, p) for t in topics if not any(tp.topic == t for tp in assigned)
           for p in sorted(consumer.partitions_for_topic(t) or ())]
    if new:
        assigned += new
        consumer.assign(assigned)  # partitions already assigned keep their position
        consumer.seek_to_beginning(*new)


def watch(settings: Settings, sent: Callable[[], bool], timeout_s: float = 900.0) -> dict[str, Any]:
    """Print incidents as the notifier publishes them, and collect the per-key alerts under them, until the
    feed is ``sent``, the worker has caught up with it and the last changes have settled."""
    consumer = KafkaConsumer(**client_config(settings.kafka), **READER, group_id=None)
    alerts_topic, incidents_topic = settings.kafka.topic("alerts"), settings.kafka.topic(INCIDENTS)
    t0 = time.monotonic()
    first_alert_s: float | None = None
    alerts: list[dict[str, Any]] = []
    incidents: list[dict[str, Any]] = []
    assigned: list[TopicPartition] = []
    caught_up: float | None = None
    try:
        while time.monotonic() - t0 < timeout_s:
            if len({tp.topic for tp in assigned}) < 2:
                _assign(consumer, [alerts_topic, incidents_topic], assigned)
            for tp, records in (consumer.poll(timeout_ms=1000).items() if assigned else []):
                for r in records:
                    doc = json.loads(r.value)
                    if tp.topic == alerts_topic:
                        alerts.append(doc)
                        first_alert_s = first_alert_s or time.monotonic() - t0
                    else:
                        incidents.append(doc)
                        print(format_incident(doc), flush=True)
            if sent() and not any(wait_for_pipeline(settings, 0.0).values()):
                # the feed's partitions turn idle, then the watermark closes its last windows, then the notifier
                # publishes the incidents' last changes once they settle
                caught_up = caught_up or time.monotonic()
                if time.monotonic() - caught_up > settings.detector.idle_s + 3 + settings.delivery.incident_settle_s:
                    break
            time.sleep(1.0)
    finally:
        consumer.close()
    out = outputs_since(settings, {})  # records, not offsets: transaction markers hold offsets too
    return {"scored": out.scored, "dead_lettered": out.dead, "alerts": alerts, "incidents": incidents,
            "seconds": time.monotonic() - t0, "first_alert_s": first_alert_s}


def _subscribe(settings: Settings, state: StackState, sink: WebhookSink) -> list[str]:
    """The demo's subscribers: a signed webhook, and the local Alertmanager when it runs."""
    subs = [new_subscription(kind="webhook", url=sink.url, name="demo webhook")]
    if "alertmanager" in state.urls:
        subs.append(new_subscription(kind="alertmanager", url=state.urls["alertmanager"], name="local Alertmanager"))
    for sub in subs:
        save_subscription(settings, sub)
    return [f"{s.kind} {s.url}" for s in subs]


def _deliveries(state: StackState) -> dict[str, int]:
    """Delivered incident versions per channel, from the notifier's own counters."""
    from prometheus_client.parser import text_string_to_metric_families

    url = state.metrics.get("notifier")
    if not url:
        return {}
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {s.labels["kind"]: int(s.value) for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "tonewatch_deliveries_total" and s.labels.get("outcome") == "delivered" and s.value}


def _sink_lag(state: StackState) -> float | None:
    """Records the sink has still to write, from its /metrics; None before its first lag reading."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(state.metrics["sink"], timeout=5) as resp:
        text = resp.read().decode()
    lags = [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "tonewatch_sink_lag"]
    return sum(lags) if lags else None


def store_trend(local: Settings, state: StackState, ticker: str, timeout_s: float = 60.0) -> list[str]:
    """The ticker's closed windows as the history store has them, once the sink has caught up."""
    import psycopg

    from tonewatch.store.queries import ticker_trend

    if local.store.dsn is None or "sink" not in state.metrics:
        return ["(no history store: PostgreSQL 15 is not installed; run make system)"]
    deadline = time.monotonic() + timeout_s
    while _sink_lag(state) != 0 and time.monotonic() < deadline:
        time.sleep(1.0)
    with psycopg.connect(local.store.dsn.get_secret_value()) as conn:
        rows = ticker_trend(conn, ticker, since=datetime.fromtimestamp(0, UTC))
    return [f"{r['window_start']:%H:%M} {r['count']:4d} msgs {r['negative']:3d} negative  share {r['share']:.2f}  "
            f"baseline {r['baseline'] if r['baseline'] is not None else float('nan'):.2f}  "
            + "#" * round(20 * r["share"]) for r in rows]


def run_demo(settings: Settings, feed: Path, speed: float = 60.0) -> int:
    t_start = time.monotonic()
    # fresh topics each run: the local broker keeps earlier runs' data, which must not count here
    given = settings.delivery.webhook_secret
    secret = given.get_secret_value() if given else secrets.token_hex(16)
    settings = settings.updated(
        kafka__topic_prefix=f"demo-{time.strftime('%Y%m%d-%H%M%S')}", delivery__webhook_secret=SecretStr(secret),
    )
    print("== starting the local stack (Kafka, Triton, worker, notifier, Prometheus, Alertmanager); "
          "first run trains models v1 ...", flush=True)
    state = up(settings)
    local = settings.with_endpoints(state.endpoints)
    if state.console_password:
        print(f"== analyst console {state.urls['console']}: user analyst, one-time password {state.console_password} "
              "(open while the demo runs)", flush=True)
    delivered: dict[str, int] = {}
    verified = rejected = 0
    try:
        with WebhookSink(secret) as sink:
            print("== alert subscriptions: " + "; ".join(_subscribe(local, state, sink)), flush=True)
            expected = sum(1 for line in feed.read_bytes().splitlines() if line.strip())
            print(f"== stack up in {time.monotonic() - t_start:.0f}s (topics {settings.kafka.topic_prefix}.*); "
                  f"replaying {expected} messages from {feed} at {speed:g}x event time; incidents as the "
                  "notifier publishes them (the per-key alerts under each indented):", flush=True)
            with ThreadPoolExecutor(1) as pool:
                sending = pool.submit(replay, local, feed, speed)
                result = watch(local, sending.done)
                report = sending.result()
            deadline = time.monotonic() + 30  # the notifier delivers asynchronously: let it catch up
            while len(sink.received) < len(result["incidents"]) and time.monotonic() < deadline:
                time.sleep(0.5)
            verified, rejected = len(sink.received), sink.rejected
            delivered = _deliveries(state)
        page = report_from_topics(local, REPORT_DIR)  # before the stack goes: it reads the topics
        trend = store_trend(local, state, "TSLA")
    finally:
        print("== stopping the stack", flush=True)
        down(local)
    alerts, incidents = result["alerts"], result["incidents"]
    firing = collections.Counter(f"{a['dimension']}={a['key']}" for a in alerts if a["status"] == "firing")
    resolved = collections.Counter(f"{a['dimension']}={a['key']}" for a in alerts if a["status"] == "resolved")
    latest = {i["id"]: i for i in incidents}  # versions come in order
    print("\n== summary")
    print(f"messages sent {report.sent}, scored {result['scored']}, dead-lettered {result['dead_lettered']}")
    print(f"incidents {len(latest)}: " + "; ".join(
        f"{i['headline']} {i['severity']} {i['status']} ({len(i['children'])} alerts)" for i in latest.values()))
    print(f"per-key alerts fired {sum(firing.values())}: {dict(firing)}; resolved: {dict(resolved)}")
    print(f"delivered by the notifier: {delivered or 'nothing'} of {len(incidents)} incident versions; the webhook "
          f"verified {verified} signatures and rejected {rejected}")
    if result["first_alert_s"] is not None:
        print(f"time to first alert after replay start: {result['first_alert_s']:.1f}s "
              f"(the sample surge starts {SURGE_START_MIN * 60 / speed:.0f}s into the paced replay)")
    print(f"processing took {result['seconds']:.1f}s; whole demo {time.monotonic() - t_start:.0f}s")
    print(f"report (open in a browser): {page.resolve()}")
    print("TSLA from the history store (tonewatch trends TSLA; Grafana's Ticker dashboard):")
    print("\n".join(f"  {line}" for line in trend))
    return 0 if firing and latest else 1
