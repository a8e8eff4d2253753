"""Incident delivery end to end on a real Kafka broker and a real Alertmanager: the notifier process,
subscriptions made with the CLI, a local webhook receiver that goes down and comes back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tonewatch.core.kafka_io import producer, read_json
from tonewatch.core.settings import Settings
from tonewatch.notify.egress import LOOPBACK
from tonewatch.notify.signing import verify
from tonewatch.stack import worker_env
from tonewatch.stack.procs import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-signing-secret"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from tonewatch.stack.kafka import start_kafka, stop_kafka

    run_dir = tmp_path_factory.mktemp("delivery")
    base = Settings().updated(run_dir=REPO / ".tonewatch")
    kafka = start_kafka(base, run_dir / "kafka")
    try:
        yield base.updated(kafka__bootstrap=kafka.bootstrap, run_dir=run_dir)
    finally:
        stop_kafka(kafka)


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    """A unique prefix; quick retries; a short settle delay; escalation off unless a test turns it on."""
    return kafka_settings.updated(
        kafka__topic_prefix=f"d{uuid.uuid4().hex[:10]}", delivery__webhook_secret=SecretStr(SECRET),
        delivery__incident_settle_s=1.0,
        delivery__backoff_base_s=0.5, delivery__backoff_cap_s=2.0, delivery__timeout_s=3.0,
        delivery__escalation_interval_s=3600.0, delivery__metrics_port=free_port(), kafka__topic_partitions=2,
        delivery__allowed_networks=LOOPBACK,  # the receivers and Alertmanager listen on 127.0.0.1
    )


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every request; start/stop at will on one port."""

    def __init__(self, port: int, status: int = 200) -> None:
        self.port, self.status = port, status
        self.requests: list[dict[str, Any]] = []
        self._srv: ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._srv = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def alerts(self, alert_id: str | None = None) -> list[dict[str, Any]]:
        """The incident versions received (those with this alert in them)."""
        docs = [json.loads(r["body"]) for r in self.requests]
        return [d for d in docs if alert_id is None or any(c["id"] == alert_id for c in d["children"])]


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(status: int = 200, start: bool = True) -> Receiver:
        r = Receiver(free_port(), status)
        made.append(r)
        if start:
            r.start()
        return r

    yield make
    for r in made:
        r.stop()


class NotifierProc:
    """``tonewatch notifier`` as a subprocess: the entry point the compose service runs."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings, self.log_path = settings, log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tonewatch", "notifier"], env=worker_env(settings),
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 120
        while "notifier ready" not in log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"notifier not ready:\n{self.log_tail()}")
            time.sleep(0.5)

    def metric(self, name: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://{self.settings.metrics_host}:{self.settings.delivery.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if f"{s.name}{{{','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))}}}" == name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def notifier(tmp_path: Path) -> Iterator[Callable[[Settings], NotifierProc]]:
    procs: list[NotifierProc] = []

    def start(settings: Settings) -> NotifierProc:
        p = NotifierProc(settings, tmp_path / f"notifier-{len(procs)}.log")
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


def cli(settings: Settings, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "tonewatch", *args], env=worker_env(settings), cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


def alert(aid: str, status: str = "firing", key: str = "TSLA", severity: str = "critical", dimension: str = "ticker",
          messages: tuple[str, ...] = ()) -> dict[str, Any]:
    """An alert as the worker writes it; its driving messages are its own unless ``messages`` are shared."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"id": aid, "status": status, "dimension": dimension, "key": key, "severity": severity,
            "window": {"start": now, "end": now, "seconds": 60}, "volume": 12, "negative": 10,
            "negative_share": 0.83, "baseline": 0.1, "score": 7.5, "model_versions": {"sentiment": "1"},
            "top_messages": [{"text": f"{key} plunges", "message_id": m, "source": "news", "p_negative": 0.9}
                             for m in messages or (f"m-{aid}",)],
            "at": now}


def produce(settings: Settings, *alerts: dict[str, Any]) -> None:
    p = producer(settings.kafka)
    for a in alerts:
        p.send(settings.kafka.topic("alerts"), key=a["id"].encode(), value=json.dumps(a).encode())
    p.flush()
    p.close()


def until(check: Callable[[], bool], what: str, timeout_s: float = 90.0, log: NotifierProc | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{log.log_tail() if log else ''}")
        time.sleep(0.3)


def test_down_receiver_gets_the_alert_once_after_it_comes_back(
    settings: Settings, receivers: Callable[..., Receiver], notifier: Callable[[Settings], NotifierProc]
) -> None:
    hook = receivers(start=False)  # port closed: connection refused
    sub_id = cli(settings, "alerts", "subscribe", "--webhook", hook.url, "--name", "desk")
    assert sub_id in cli(settings, "alerts", "list", "--subscriptions")
    n = notifier(settings)
    a = alert("a-down")
    produce(settings, a, a)  # the same alert twice on the topic
    until(lambda: n.metric('tonewatch_deliveries_total{kind=webhook,outcome=retry}') >= 1, "a failed attempt", log=n)
    time.sleep(5)
    hook.start()
    until(lambda: len(hook.requests) >= 1, "the delivery after the receiver came back", log=n)
    time.sleep(3)
    assert len(hook.requests) == 1
    req = hook.requests[0]
    incident = json.loads(req["body"])
    assert (incident["status"], incident["version"], incident["headline"]) == ("opened", 1, "TSLA")
    assert [(c["id"], c["status"]) for c in incident["children"]] == [("a-down", "firing")]
    assert req["headers"]["Idempotency-Key"] == f"{incident['id']}:v1"
    assert verify(SECRET, req["headers"]["X-Tonewatch-Timestamp"], req["body"],
                  req["headers"]["X-Tonewatch-Signature"], time.time())
    assert not verify("wrong", req["headers"]["X-Tonewatch-Timestamp"], req["body"],
                      req["headers"]["X-Tonewatch-Signature"], time.time())

    # a restart and a third copy of the alert: the ledger knows it was delivered
    n.stop()
    n2 = notifier(settings)
    b = alert("b-after-restart", key="AAPL")
    produce(settings, a, b)
    until(lambda: len(hook.alerts("b-after-restart")) == 1, "the next alert after the restart", log=n2)
    until(lambda: n2.metric('tonewatch_deliveries_total{kind=webhook,outcome=duplicate}') >= 1, "the duplicate",
          log=n2)
    time.sleep(2)
    assert len(hook.alerts("a-down")) == 1
    (b_incident,) = hook.alerts("b-after-restart")
    ledger = read_json(settings.kafka, settings.kafka.topic("deliveries"))
    assert {e["key"] for e in ledger} == {f"{sub_id}|{incident['id']}|v1|initial",
                                          f"{sub_id}|{b_incident['id']}|v1|initial"}


def test_ticker_filter(
    settings: Settings, receivers: Callable[..., Receiver], notifier: Callable[[Settings], NotifierProc]
) -> None:
    tsla, everything = receivers(), receivers()
    cli(settings, "alerts", "subscribe", "--webhook", tsla.url, "--ticker", "TSLA")
    cli(settings, "alerts", "subscribe", "--webhook", everything.url)
    n = notifier(settings)
    produce(settings, alert("f-aapl", key="AAPL"), alert("f-tsla", key="TSLA"), alert("f-msft", key="MSFT"))
    until(lambda: len(everything.requests) == 3 and len(tsla.requests) >= 1, "deliveries", log=n)
    time.sleep(2)
    assert [[c["id"] for c in d["children"]] for d in tsla.alerts()] == [["f-tsla"]]


def test_unacked_critical_alert_escalates_until_acked_or_resolved(
    settings: Settings, receivers: Callable[..., Receiver], notifier: Callable[[Settings], NotifierProc]
) -> None:
    settings = settings.updated(delivery__escalation_interval_s=2.0, delivery__escalation_max=10)
    hook = receivers()
    cli(settings, "alerts", "subscribe", "--webhook", hook.url)
    n = notifier(settings)
    produce(settings, alert("e-crit"), alert("e-resolves"), alert("e-warn", key="AAPL", severity="warning"))
    until(lambda: [d.get("escalation") for d in hook.alerts("e-crit")][:3] == [None, 1, 2], "two escalations", log=n)
    assert [d.get("escalation") for d in hook.alerts("e-resolves")][:2] == [None, 1]
    crit_id = hook.alerts("e-crit")[0]["id"]
    assert [r["headers"]["Idempotency-Key"] for r in hook.requests if json.loads(r["body"])["id"] == crit_id][:3] \
        == [f"{crit_id}:v1", f"{crit_id}:v1:escalation-1", f"{crit_id}:v1:escalation-2"]
    assert cli(settings, "alerts", "ack", "e-crit", "--by", "ops", "--note", "looking") == "acknowledged e-crit"
    (ack,) = read_json(settings.kafka, settings.kafka.topic("acks"))
    assert (ack["alert_id"], ack["by"], ack["note"]) == ("e-crit", "ops", "looking")
    produce(settings, alert("e-resolves", status="resolved"))
    until(lambda: hook.alerts("e-resolves")[-1]["status"] == "resolved", "the resolved alert", log=n)
    time.sleep(2)  # an escalation already on its way when the ack landed may still arrive
    crit, resolves = len(hook.alerts("e-crit")), len(hook.alerts("e-resolves"))
    time.sleep(6)  # three more intervals
    assert len(hook.alerts("e-crit")) == crit
    assert len(hook.alerts("e-resolves")) == resolves
    assert len(hook.alerts("e-warn")) == 1  # warnings never escalate
    assert n.metric("tonewatch_escalations_total{}") >= 3


def test_rejected_or_hopeless_deliveries_go_to_the_delivery_dead_letter_topic(
    settings: Settings, receivers: Callable[..., Receiver], notifier: Callable[[Settings], NotifierProc]
) -> None:
    settings = settings.updated(delivery__give_up_s=4.0)
    rejects, failing = receivers(status=400), receivers(status=503)
    n = notifier(settings)  # subscriptions made while it runs: it follows the topic
    reject_id = cli(settings, "alerts", "subscribe", "--webhook", rejects.url)
    failing_id = cli(settings, "alerts", "subscribe", "--webhook", failing.url)
    until(lambda: f"subscription {failing_id} active" in n.log_path.read_text(), "the live subscription", log=n)
    produce(settings, alert("dl-1"))

    def dead() -> dict[str, dict[str, Any]]:
        return {d["subscription"]: d for d in read_json(settings.kafka, settings.kafka.topic("delivery-dead-letter"))}

    until(lambda: len(dead()) == 2, "two dead letters", log=n)
    rejected, gave_up = dead()[reject_id], dead()[failing_id]
    assert [c["id"] for c in rejected["incident"]["children"]] == ["dl-1"] and rejected["version"] == 1
    assert rejected["attempts"] == 1 and rejected["reason"].startswith("HTTP 400")
    assert len(rejects.requests) == 1  # a 400 is never retried
    assert gave_up["incident_id"] == rejected["incident_id"] and gave_up["reason"].startswith("gave up after")
    assert "HTTP 503" in gave_up["reason"] and gave_up["attempts"] == len(failing.requests) >= 2
    assert n.metric("tonewatch_deliveries_total{kind=webhook,outcome=dead_letter}") == 2
    assert n.metric("tonewatch_deliveries_total{kind=webhook,outcome=retry}") >= 1
    cli(settings, "alerts", "unsubscribe", reject_id)
    assert cli(settings, "alerts", "list", "--subscriptions", "--json").splitlines() == [
        json.dumps({"id": failing_id, "kind": "webhook", "url": failing.url})]
