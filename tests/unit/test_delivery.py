"""Pure parts of incident delivery: signatures, backoff, escalation schedule, filters, payload shapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tonewatch.notify.incidents import group_alerts
from tonewatch.notify.ledger import ledger_key
from tonewatch.notify.policy import backoff_s, classify_status, due_escalation
from tonewatch.notify.senders import ALERTNAME, alertmanager_alerts, grafana_annotation, webhook_request
from tonewatch.notify.signing import sign, verify
from tonewatch.notify.state import State, delivery_entry
from tonewatch.notify.subscriptions import Subscription, apply_record, new_subscription

ALERT = {
    "id": "a1", "status": "firing", "dimension": "ticker", "key": "TSLA", "severity": "critical",
    "window": {"start": "2026-01-05T14:24:00Z", "end": "2026-01-05T14:25:00Z", "seconds": 60},
    "negative_share": 0.8, "baseline": 0.1, "volume": 12, "score": 7.2, "at": "2026-01-05T14:25:08Z",
    "top_messages": [{"text": "Tesla recalls cars", "message_id": "m", "source": "news", "p_negative": 0.9}],
    "dashboard_url": "http://grafana/d/tw?var-key=TSLA",
}
# the same driving message: related
SECTOR_ALERT = {**ALERT, "id": "a2", "dimension": "sector", "key": "Consumer Discretionary", "severity": "warning"}
(INCIDENT,) = group_alerts([ALERT, SECTOR_ALERT], 300.0, {})


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"id": "a1"}'
    sig = sign("s3cret", 1000, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify("s3cret", "1000", body, sig, now=1010)
    assert not verify("other", 1000, body, sig, now=1010)
    assert not verify("s3cret", 1000, body + b" ", sig, now=1010)
    assert not verify("s3cret", 1001, body, sig, now=1010)  # the timestamp is signed too
    assert not verify("s3cret", 1000, body, sig, now=1000 + 301)  # replayed too late
    assert not verify("s3cret", "soon", body, sig, now=1000)


def test_known_signature_vector() -> None:
    # HMAC-SHA256(key="key", msg="1.x"), computed independently with openssl
    assert sign("key", 1, b"x") == "sha256=" + "fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec"


@given(attempt=st.integers(1, 60), jitter=st.floats(0, 0.999))
def test_backoff_is_capped_and_jittered_in_the_upper_half(attempt: int, jitter: float) -> None:
    d = backoff_s(attempt, base_s=1.0, cap_s=60.0, jitter=jitter)
    ceiling = min(60.0, 2.0 ** (attempt - 1))
    assert ceiling / 2 <= d <= ceiling


def test_backoff_grows_exponentially_until_the_cap() -> None:
    assert [backoff_s(a, 1.0, 10.0, 0.999999) for a in (1, 2, 3, 4, 5, 6)] == pytest.approx([1, 2, 4, 8, 10, 10])


@pytest.mark.parametrize(("code", "outcome"), [
    (200, "delivered"), (202, "delivered"), (204, "delivered"), (408, "retry"), (429, "retry"),
    (500, "retry"), (503, "retry"), (400, "permanent"), (401, "permanent"), (404, "permanent"), (410, "permanent"),
])
def test_status_classification(code: int, outcome: str) -> None:
    assert classify_status(code) == outcome


def _due(**kw: object) -> int | None:
    args: dict = {"severity": "critical", "status": "firing", "acked": False, "notified_at": 100.0, "sent": 0,
                  "now": 100.0, "interval_s": 10.0, "max_escalations": 2}
    args.update(kw)
    return due_escalation(**args)


def test_escalation_schedule() -> None:
    assert _due(now=109.9) is None
    assert _due(now=110.0) == 1
    assert _due(now=115.0, sent=1) is None
    assert _due(now=120.0, sent=1) == 2
    assert _due(now=500.0, sent=2) is None  # escalation_max reached
    assert _due(now=500.0, acked=True) is None
    assert _due(now=500.0, status="resolved") is None
    assert _due(now=500.0, severity="warning") is None
    assert _due(now=500.0, max_escalations=0) is None


def test_subscription_filters_reuse_tail_filters_on_the_incidents_alerts() -> None:
    tsla = new_subscription(kind="webhook", url="http://h/x", ticker="tsla")
    assert tsla.wants(INCIDENT)
    (aapl,) = group_alerts([{**ALERT, "key": "AAPL"}], 300.0, {})
    assert not tsla.wants(aapl)
    assert new_subscription(kind="webhook", url="http://h", dimension="sector").wants(INCIDENT)
    assert not new_subscription(kind="webhook", url="http://h", dimension="topic").wants(INCIDENT)
    assert not new_subscription(kind="webhook", url="http://h", topic="recall").wants(INCIDENT)
    critical = new_subscription(kind="webhook", url="http://h", min_severity="critical")
    assert critical.wants(INCIDENT)
    assert not critical.wants({**INCIDENT, "severity": "warning"})
    assert new_subscription(kind="alertmanager", url="http://h/").url == "http://h"


@pytest.mark.parametrize("fields", [
    {"kind": "webhook", "url": "ftp://x"},
    {"kind": "email", "url": "http://x"},
    {"kind": "webhook", "url": "http://x", "min_severity": "huge"},
    {"kind": "webhook", "url": "http://x", "dimension": "planet"},
    {"kind": "webhook", "url": "http://x", "secret_env": "the-actual-secret!"},
])
def test_subscription_validation(fields: dict) -> None:
    with pytest.raises(ValidationError):
        new_subscription(**fields)


def test_subscriptions_fold_with_tombstones() -> None:
    subs: dict[str, Subscription] = {}
    s = new_subscription(kind="webhook", url="http://h", secret_env="TONEWATCH_WEBHOOK_SECRET_HOOK")
    apply_record(subs, s.id.encode(), json.dumps(s.model_dump()).encode())
    assert subs == {s.id: s}
    apply_record(subs, s.id.encode(), None)
    assert subs == {}


def test_state_rebuilds_escalation_progress_from_the_ledger() -> None:
    sub = new_subscription(kind="webhook", url="http://h")
    st_ = State()
    for kind, at in (("initial", 50.0), ("escalation-1", 60.0), ("escalation-2", 70.0)):
        key = ledger_key(sub.id, "a1", "firing", kind)
        entry = delivery_entry(key, sub.id, sub.kind, ALERT, kind, at, 1)
        st_.apply("deliveries", 0, 0, key.encode(), json.dumps(entry).encode())
    assert ledger_key(sub.id, "a1", "firing", "initial") in st_.ledger
    assert st_.notified[(sub.id, "a1")].at == 50.0
    assert st_.notified[(sub.id, "a1")].sent == 2
    st_.apply("acks", 0, 0, b"a1", json.dumps({"by": "ops"}).encode())
    assert "a1" in st_.acks
    st_.apply("acks", 0, 1, b"a1", None)
    assert "a1" not in st_.acks


def test_state_keeps_the_newest_record_of_an_alert() -> None:
    st_ = State()
    st_.apply("alerts", 1, 5, b"a1", json.dumps({**ALERT, "status": "resolved"}).encode())
    st_.apply("alerts", 1, 3, b"a1", json.dumps(ALERT).encode())  # a replay of an older record
    assert st_.alerts["a1"][2]["status"] == "resolved"


def test_webhook_request_is_signed_and_idempotent_per_version() -> None:
    body, headers = webhook_request(INCIDENT, "s3cret", 1700000000)
    assert json.loads(body) == INCIDENT
    assert headers["X-Tonewatch-Timestamp"] == "1700000000"
    assert verify("s3cret", headers["X-Tonewatch-Timestamp"], body, headers["X-Tonewatch-Signature"], 1700000001)
    assert headers["Idempotency-Key"] == f"{INCIDENT['id']}:v1"
    assert webhook_request({**INCIDENT, "version": 3, "escalation": 2}, "s", 1)[1]["Idempotency-Key"] == \
        f"{INCIDENT['id']}:v3:escalation-2"


def test_alertmanager_gets_one_alert_per_child_labelled_with_the_incident() -> None:
    firing = alertmanager_alerts(INCIDENT, now=1.7e9, hold_s=3600)
    assert [a["labels"] for a in firing] == [
        {"alertname": ALERTNAME, "incident": INCIDENT["id"], "headline": "TSLA", "severity": "critical",
         "dimension": d, "key": k, "alert_id": i}
        for d, k, i in (("ticker", "TSLA", "a1"), ("sector", "Consumer Discretionary", "a2"))]
    assert firing[0]["startsAt"] == "2026-01-05T14:24:00Z"
    assert {a["endsAt"][:19] for a in firing} == {"2023-11-14T23:13:20"}  # held past Alertmanager's resolve_timeout
    assert firing[0]["annotations"]["top_message"] == "Tesla recalls cars"
    assert firing[0]["annotations"]["dashboard_url"] == ALERT["dashboard_url"]
    (resolved,) = group_alerts([ALERT, {**ALERT, "status": "resolved"}], 300.0, {})
    (ended,) = alertmanager_alerts(resolved, now=1.7e9, hold_s=3600)
    assert ended["labels"]["alert_id"] == "a1" and ended["endsAt"].startswith("2023-11-14T22:13:20")


def test_alertmanager_ends_the_label_sets_an_incident_had_before() -> None:
    """A label set is an alert's identity in Alertmanager: the old headline's and severity's must end."""
    rerooted = {**INCIDENT, "former_headlines": ["Consumer Discretionary"], "former_severities": ["warning"]}
    alerts = alertmanager_alerts(rerooted, now=1.7e9, hold_s=3600)
    held = {(a["labels"]["alert_id"], a["labels"]["headline"], a["labels"]["severity"])
            for a in alerts if a["endsAt"].startswith("2023-11-14T23")}
    assert held == {("a1", "TSLA", "critical"), ("a2", "TSLA", "critical")}
    assert len(alerts) == 2 * 4  # and for each child the three former sets, ended now


def test_grafana_annotation_spans_the_incident_and_is_tagged_with_it() -> None:
    a = grafana_annotation(INCIDENT)
    assert a["time_to"] - a["time_from"] == 60_000
    assert a["tags"] == ["tonewatch", f"incident:{INCIDENT['id']}", "ticker", "TSLA", "critical"]
    assert "Tesla recalls cars" in a["text"] and "sector=Consumer Discretionary" in a["text"]


def test_webhook_without_a_secret_is_a_permanent_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from tonewatch.core.settings import Settings
    from tonewatch.notify.senders import deliver

    name = "TONEWATCH_WEBHOOK_SECRET_HOOK"
    monkeypatch.delenv(name, raising=False)
    closed = "http://127.0.0.1:9/hook"  # discard port: nothing listens
    unsigned = Settings().updated(delivery__webhook_secret=None, delivery__allowed_networks="127.0.0.1/32")
    assert deliver(unsigned, new_subscription(kind="webhook", url=closed), INCIDENT)[0] == "permanent"
    own = new_subscription(kind="webhook", url=closed, secret_env=name)
    outcome, detail = deliver(unsigned, own, INCIDENT)
    assert outcome == "permanent" and name in detail
    monkeypatch.setenv(name, "x")
    assert deliver(unsigned, own, INCIDENT)[0] == "retry"  # signed, then refused by the closed port


@pytest.mark.parametrize(("args", "message"), [
    ([], "exactly one of"),
    (["--webhook", "http://a", "--alertmanager", "http://b"], "exactly one of"),
    (["--grafana", "http://g", "--secret-env", "X"], "--webhook only"),
    (["--webhook", "not-a-url"], "http(s) URL"),
    (["--webhook", "http://a", "--min-severity", "loud"], "min severity"),
    (["--webhook", "http://a", "--secret-env", "KAFKA_PASSWORD"], "TONEWATCH_WEBHOOK_SECRET_<NAME>"),
])
def test_subscribe_rejects_bad_options_before_touching_kafka(args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from tonewatch.cli import app

    result = CliRunner().invoke(app, ["alerts", "subscribe", *args], env={"TONEWATCH_KAFKA__BOOTSTRAP": "127.0.0.1:9"})
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())
