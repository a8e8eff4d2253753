"""Dashboards and rules against a real Prometheus scraping a real worker, Triton, notifier and Alertmanager
after a replay whose alerts the notifier delivers to a webhook sink and to that Alertmanager; then the SQL
dashboards against a real PostgreSQL the sink fills from the same replay."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from tests.dashboard_sql import SQL_DASHBOARDS
from tests.integration.conftest import REPO, Worker, wait_for, wait_watermark
from tests.integration.store_checks import check_store_dashboards
from tests.integration.test_pipeline import last_event_time
from tonewatch.core.kafka_io import client_config
from tonewatch.core.settings import Settings
from tonewatch.notify.store import save_subscription
from tonewatch.notify.subscriptions import new_subscription
from tonewatch.replay import replay
from tonewatch.stack import worker_env
from tonewatch.stack.alertmanager import start_alertmanager, stop_alertmanager
from tonewatch.stack.procs import free_port
from tonewatch.stack.prometheus import (
    api,
    dashboard_queries,
    start_prometheus,
    stop_prometheus,
    vector_selectors,
)

pytestmark = pytest.mark.integration

# the history store's dashboards run against PostgreSQL (store_checks.py)
DASHBOARDS = sorted(p for p in (REPO / "dashboards" / "json").glob("*.json") if p.stem not in SQL_DASHBOARDS)
RULE_FILES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))


class Sink:
    """A webhook receiver on a loopback port that keeps every POSTed body."""

    def __init__(self) -> None:
        bodies: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sink() -> Iterator[Sink]:
    made = Sink()
    yield made
    made.server.shutdown()
    made.server.server_close()


@pytest.fixture
def notifier(tmp_path: Path) -> Iterator[Callable[[Settings], Settings]]:
    """Starts ``tonewatch notifier`` on the given settings; returns them with its metrics port."""
    procs: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "notifier.log"

    def start(settings: Settings) -> Settings:
        local = settings.updated(delivery__metrics_port=free_port(),
                                            delivery__webhook_secret=SecretStr("observability-test"))
        with log_path.open("ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "tonewatch", "notifier"], env=worker_env(local),
                                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
        deadline = time.monotonic() + 120
        while "notifier ready" not in log_path.read_text(errors="replace"):
            assert procs[0].poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        return local

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _am_received_firing(url: str) -> float:
    """Firing alerts Alertmanager has received, from its own counter."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "alertmanager_alerts_received_total" and s.labels.get("status") == "firing")


def _cleanup_policy(settings: Settings, topic: str) -> str:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(**client_config(settings.kafka), client_id="observability-test")
    try:
        [resource] = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    found = {name: value for name, value, *_ in resource.resources[0][4]}
    return str(found["cleanup.policy"])


def _feed_slice(path: Path) -> int:
    """The sample feed's TSLA story (baseline, surge, after) with every 16th other line and its bad JSON line.

    A tenth of the feed keeps the test within minutes on a shared CPU while still raising a real alert and
    touching every dimension, both sources and the dead-letter topic. Returns how many should be scored.
    """
    lines = (REPO / "data" / "sample_feed.jsonl").read_text().splitlines()
    kept = [line for i, line in enumerate(lines) if "TSLA" in line.upper() or i % 16 == 0 or '"bad-1"' in line]
    path.write_text("\n".join(kept) + "\n")
    bad = [line for line in kept if line.startswith('{"id": "bad-')]
    return len(kept) - len(bad)


def _has_value(result: list[dict[str, Any]]) -> bool:
    """At least one finite sample: a series of NaNs (0/0 all along) is no data to a panel."""
    for series in result:
        values = series.get("values") or [series["value"]]
        if any(math.isfinite(float(v)) for _, v in values):
            return True
    return False


def _substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's template variables, as Grafana would expand them for this run."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${name}", variables[name])
    return expr


def _check_variables(url: str, dashboard: dict[str, Any], variables: dict[str, str]) -> None:
    for var in dashboard["templating"]["list"]:
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert found, var["query"]
        series = api(url, "series", **{"match[]": _substitute(found.group(1), variables)})
        values = {s[found.group(2)] for s in series if found.group(2) in s}
        assert values, f"{dashboard['title']}: variable {var['name']} has no values"


def test_every_dashboard_and_rule_expression_returns_data(
    pipeline: Callable[..., Worker], notifier: Callable[[Settings], Settings], sink: Sink, tmp_path: Path
) -> None:
    # small batches and a long deadline keep a CPU Triton shared with other test sessions making progress
    # instead of timing out whole batches; a 50-message drift window fills during the replay, so drift PSI
    # is exported
    worker = pipeline(scoring__batch_size=16, triton__timeout_s=120.0, retrain__drift_window=50)
    s = worker.settings
    assert _cleanup_policy(s, s.kafka.topic("feedback")) == "compact"  # created by the worker with the others
    am = start_alertmanager(tmp_path / "alertmanager")
    am_target = am.url.split("://")[1]
    # every alert of the replay goes to the webhook sink and to the real Alertmanager
    save_subscription(s, new_subscription(kind="webhook", url=sink.url, name="sink"))
    save_subscription(s, new_subscription(kind="alertmanager", url=am.url, name="local alertmanager"))
    n = notifier(s)
    prom = start_prometheus(tmp_path / "prometheus", {
        "worker": [f"{s.metrics_host}:{s.scoring.metrics_port}"], "triton": [s.triton.metrics_url],
        "notifier": [f"{n.metrics_host}:{n.delivery.metrics_port}"], "alertmanager": [am_target],
    }, interval_s=1.0, alertmanagers=[am_target])
    try:
        start, fired = _replay_and_deliver(s, worker, sink, am.url, tmp_path)
        _check_targets_and_models(prom.url, am.url, s)
        _check_dashboards(prom.url, start, fired)
        _check_rules(prom.url)
        assert check_store_dashboards(s, tmp_path / "postgres", ticker="TSLA") >= 10
    finally:
        stop_prometheus(prom)
        stop_alertmanager(am)


def _replay_and_deliver(s: Settings, worker: Worker, sink: Sink, am_url: str, tmp_path: Path) -> tuple[float, int]:
    """Replays the feed slice until it is scored and its alerts reached both destinations: (start, alerts fired)."""
    start = time.time()
    expected = _feed_slice(tmp_path / "feed.jsonl")
    replay(s, tmp_path / "feed.jsonl", speed=120)
    wait_for(s, "scored", expected, worker, timeout_s=600)
    assert wait_for(s, "dead-letter", 1, worker)
    wait_watermark([worker], last_event_time(s))  # the feed's partitions idle: every window that closes has
    alerts = wait_for(s, "alerts", 1, worker)
    fired = sum(a["status"] == "firing" for a in alerts)
    assert fired, "the replay raises no alert"
    firing_ids = {a["id"] for a in alerts if a["status"] == "firing"}
    deadline = time.monotonic() + 120
    # the webhook gets incidents: every alert that fired is in one it received
    while not firing_ids <= {c["id"] for b in list(sink.bodies) for c in b["children"]}:
        assert time.monotonic() < deadline, f"webhook got {len(sink.bodies)} deliveries, not {firing_ids}"
        time.sleep(1.0)
    # Alertmanager received them, one alert per child, each firing at least once (windows close and resolve
    # fast in a replay, so none may still be active)
    assert _am_received_firing(am_url) >= fired, fired
    time.sleep(10)  # the lag gauge refreshes every 5 s; then a few scrapes and rule evaluations
    return start, fired


def _check_targets_and_models(prom_url: str, am_url: str, s: Settings) -> None:
    """Every target is up, both destinations delivered, and the model gauges show production only."""
    up = {r["metric"]["job"]: r["value"][1] for r in api(prom_url, "query", query="up")["result"]}
    assert up == {"worker": "1", "triton": "1", "notifier": "1", "alertmanager": "1"}, up
    delivered = api(prom_url, "query", query='sum by (kind) (tonewatch_deliveries_total{outcome="delivered"})')
    assert {r["metric"]["kind"]: float(r["value"][1]) >= 1 for r in delivered["result"]} == \
        {"webhook": True, "alertmanager": True, "grafana": False}
    assert [a["url"] for a in api(prom_url, "alertmanagers")["activeAlertmanagers"]] == \
        [f"{am_url}/api/v2/alerts"]

    # no rollout ran: each model's production version is the one Triton serves, and no canary
    roles = api(prom_url, "query", query="tonewatch_model_version_info")["result"]
    assert {(r["metric"]["model"], r["metric"]["role"]) for r in roles} == \
        {(s.triton.sentiment_model, "production"), (s.triton.topic_model, "production")}, roles
    shares = api(prom_url, "query", query="tonewatch_canary_share")["result"]
    m = s.triton
    assert {r["metric"]["model"]: r["value"][1] for r in shares} == {m.sentiment_model: "0", m.topic_model: "0"}
    psi = api(prom_url, "query", query="tonewatch_drift_psi")["result"]
    assert {(r["metric"]["model"], r["metric"]["kind"]) for r in psi} == \
        {(m, k) for m in (s.triton.sentiment_model, s.triton.topic_model) for k in ("class_mix", "confidence")}, psi


def _check_dashboards(prom_url: str, start: float, fired: int) -> None:
    """Every panel query and template variable returns data over the run, and the alert count is right."""
    end = time.time()
    window = {"start": f"{start:.3f}", "end": f"{end:.3f}", "step": "2"}
    variables = {"__rate_interval": "1m", "__interval": "2s", "__range": f"{math.ceil(end - start)}s",
                 "dimension": "sector", "key": ".*", "instance": ".*", "model": ".*"}
    checked = 0
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        _check_variables(prom_url, dashboard, variables)
        for where, expr in dashboard_queries(dashboard):
            query = _substitute(expr, variables)
            assert "$" not in query, f"{path.name}: {where} uses a variable this test does not set: {query}"
            result = api(prom_url, "query_range", query=query, **window)["result"]
            assert _has_value(result), f"{path.name}: {where} returns no data: {expr}"
            checked += 1
    assert checked >= 40, checked
    # and the numbers are right, not just present: the Risk overview's count is the alerts topic's
    risk = json.loads((REPO / "dashboards" / "json" / "risk-overview.json").read_text())
    count = _substitute(risk["panels"][0]["targets"][0]["expr"], variables)
    value = float(api(prom_url, "query", query=count, time=f"{end:.3f}")["result"][0]["value"][1])
    assert abs(value - fired) < 0.5, (value, fired)


def _check_rules(prom_url: str) -> None:
    """Recording rules produce series, alerting rules watch series that exist, and none fires while healthy."""
    rules = [r for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        if "record" in rule:
            assert _has_value(api(prom_url, "query", query=rule["expr"])["result"]), rule["record"]
            assert _has_value(api(prom_url, "query", query=rule["record"])["result"]), \
                f"recording rule {rule['record']} produced no series"
        else:  # rightly empty while healthy: each series it watches must exist instead
            api(prom_url, "query", query=rule["expr"])  # parses and evaluates
            selectors = vector_selectors(rule["expr"])
            assert selectors, rule["alert"]
            for selector in selectors:
                assert api(prom_url, "query", query=selector)["result"], f"{rule['alert']}: {selector} is empty"

    loaded = [r for g in api(prom_url, "rules")["groups"] for r in g["rules"]]
    assert len(loaded) == len(rules)
    assert all(r["health"] == "ok" for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]
    # a CPU-only Triton on a shared machine may rightly be slow, and a 50-message drift window over a feed
    # slice may rightly be above 0.2 (pending: it needs 30 min); nothing else may be pending or firing
    raised = [(r["name"], r["state"]) for r in loaded if r["type"] == "alerting" and r["state"] != "inactive"]
    assert {name for name, _ in raised} <= {"TonewatchInferenceSlow", "TonewatchDriftHigh"}, \
        f"a healthy pipeline raises platform alerts: {raised}"
    assert ("TonewatchDriftHigh", "firing") not in raised
