"""``tonewatch alerts bench``: delivery rate and produce->received latency to a local webhook.

Each alert is an incident of its own (no shared messages), published without the settle delay.

Runs a notifier in-process on a unique topic prefix against the configured Kafka, so it measures
the notifier itself (Kafka reads, ledger writes, signing, HTTP), not a remote receiver.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import SecretStr

from tonewatch.core.kafka_io import producer
from tonewatch.core.settings import Settings
from tonewatch.notify.egress import LOOPBACK
from tonewatch.notify.ledger import ensure_delivery_topics
from tonewatch.notify.metrics import create_notifier_metrics
from tonewatch.notify.notifier import Notifier
from tonewatch.notify.store import save_subscription
from tonewatch.notify.subscriptions import new_subscription


def _receiver(received: dict[str, float]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.setdefault(json.loads(body)["children"][0]["id"], time.monotonic())  # one alert each
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def run_delivery_bench(settings: Settings, alerts: int, timeout_s: float = 300.0) -> dict[str, Any]:
    """One JSON-able dict: alerts delivered, alerts/s, p50/p99 latency in ms."""
    s = settings.updated(kafka__topic_prefix=f"nbench-{uuid.uuid4().hex[:8]}", delivery__metrics_port=0,
                                    delivery__webhook_secret=settings.delivery.webhook_secret or SecretStr("bench"),
                                    delivery__allowed_networks=LOOPBACK,  # its receiver is on 127.0.0.1
                                    delivery__incident_settle_s=0.0)  # the notifier's own work, not the wait
    received: dict[str, float] = {}
    srv = _receiver(received)
    ensure_delivery_topics(s)
    save_subscription(s, new_subscription(kind="webhook", url=f"http://127.0.0.1:{srv.server_address[1]}/h"))
    stop = threading.Event()
    notifier = threading.Thread(target=Notifier(s, create_notifier_metrics()).run, args=(stop.is_set,))
    notifier.start()
    try:
        p = producer(s.kafka)

        def send(aid: str, key: str) -> None:
            doc = {"id": aid, "status": "firing", "dimension": "ticker", "key": key, "severity": "warning",
                   "at": "2026-01-01T00:00:00Z", "top_messages": []}
            p.send(s.kafka.topic("alerts"), key=aid.encode(), value=json.dumps(doc).encode())

        send("bench-warmup", "WARM")  # measured runs start once the notifier has joined its group
        p.flush()
        warm_deadline = time.monotonic() + 120
        while "bench-warmup" not in received and time.monotonic() < warm_deadline and notifier.is_alive():
            time.sleep(0.1)
        received.pop("bench-warmup", None)
        sent: dict[str, float] = {}
        t0 = time.monotonic()
        for i in range(alerts):
            sent[f"bench-{i}"] = time.monotonic()
            send(f"bench-{i}", f"T{i % 50}")
        p.flush()
        p.close()
        deadline = time.monotonic() + timeout_s
        while len(received) < alerts and time.monotonic() < deadline and notifier.is_alive():
            time.sleep(0.1)
        elapsed = max(received.values(), default=t0) - t0
        lat = [(received[a] - sent[a]) * 1000 for a in received]
        return {"alerts": alerts, "delivered": len(received), "seconds": round(elapsed, 2),
                "alerts_per_s": round(len(received) / elapsed, 1) if elapsed else 0.0,
                "p50_ms": round(_pct(lat, 0.5), 1) if lat else None,
                "p99_ms": round(_pct(lat, 0.99), 1) if lat else None}
    finally:
        stop.set()
        notifier.join(timeout=60)
        srv.shutdown()
        srv.server_close()
