"""The console's Models page through its HTTP interface, with a fake model registry: ops only, CSRF, the confirm
step, the CLI's promote and rollback called with the form's arguments, the audit's routing before and after, and
the page's versions, roles, drift, cards and feedback counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from models.feedback import Feedback
from models.labels import TOPIC
from tests.fakes import FakeClock
from tests.unit.test_console import CHEAP, FakeLedger, FakeReader, FakeWriter, Hasher
from tonewatch.console.app import create_app
from tonewatch.console.auth import User
from tonewatch.console.models_port import ModelActionRefused, feedback_since
from tonewatch.core.errors import ServiceError
from tonewatch.core.service_sections import ConsoleSettings

TRAINED = datetime(2026, 12, 1, tzinfo=UTC)


def _fb(mid: str, model: str, label: str, at: datetime) -> Feedback:
    return Feedback(message_id=mid, model=model, label=label, text=f"text {mid}", by="ana", at=at)


class FakeModels:
    """sentiment: production v2, canary v3 on 10%; topic: production v1, shadow v2. Promote and rollback fold
    the routing as the model events would."""

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, Any]] = {
            "sentiment": {"production": 2, "candidate": 3, "mode": "canary", "share": 0.1},
            "topic": {"production": 1, "candidate": 2, "mode": "shadow", "share": 0.0}}
        self.calls: list[tuple[str, str, int | None, str]] = []
        self.refuse: Exception | None = None

    def models(self) -> list[tuple[str, str]]:
        return [("sentiment", "sentiment"), ("topic", "topic")]

    def status(self, name: str) -> dict[str, Any]:
        return {"model": name, "on_disk": [1, 2, 3] if name == "sentiment" else [1, 2],
                "loaded": {"2": "READY", "3": "READY"} if name == "sentiment" else "Triton unreachable: refused",
                **self.routes[name], "last_events": []}

    def agreement(self, name: str, production: int, candidate: int) -> tuple[int, int]:
        assert (name, production, candidate) == ("topic", 1, 2)
        return 45, 50

    def drift(self, name: str) -> list[dict[str, Any]]:
        return [{"version": "2", "kind": "class_mix", "psi": 0.314, "threshold": 0.2, "at": TRAINED}] \
            if name == "sentiment" else []

    def card(self, name: str, version: int) -> str | None:
        return f"# {name} v{version}\n<script>alert(1)</script>" if version == 3 else None

    def trained_at(self, name: str, version: int) -> datetime | None:
        return TRAINED if (name, version) == ("sentiment", 2) else None

    def feedback(self) -> list[Feedback]:
        return [_fb("old", "sentiment", "negative", TRAINED - timedelta(days=1)),
                _fb("m1", "sentiment", "negative", TRAINED + timedelta(hours=1)),
                _fb("m2", "sentiment", "negative", TRAINED + timedelta(hours=2)),
                _fb("m3", "sentiment", "positive", TRAINED + timedelta(hours=3)),
                _fb("m4", "topic", "Earnings", TRAINED + timedelta(hours=3))]

    def promote(self, name: str, version: int | None, reason: str) -> int:
        self.calls.append(("promote", name, version, reason))
        if self.refuse:
            raise self.refuse
        target = version if version is not None else self.routes[name]["candidate"]
        self.routes[name] = {"production": target, "candidate": None, "mode": "none", "share": 0.0}
        return int(target)

    def rollback(self, name: str, to: int | None, reason: str) -> int:
        self.calls.append(("rollback", name, to, reason))
        self.routes[name] = {**self.routes[name], "candidate": None, "mode": "none", "share": 0.0}
        return int(self.routes[name]["production"])


class Rig:
    def __init__(self, with_models: bool = True) -> None:
        self.ledger, self.models = FakeLedger(), FakeModels()
        users = {name: User(name, role, CHEAP.hash(f"{name}-pw"))  # type: ignore[arg-type]
                 for name, role in (("ana", "analyst"), ("vic", "viewer"), ("ops", "ops"))}
        app = create_app(ConsoleSettings(), users, FakeReader(), self.ledger, FakeWriter(),
                         models=self.models if with_models else None, hasher=Hasher(), clock=FakeClock(1_800_000_000.0))
        self.client = TestClient(app, follow_redirects=False)

    def csrf(self, path: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    def signed_in(self, name: str) -> str:
        self.client.cookies.clear()
        signed = self.client.post("/login", data={"username": name, "password": f"{name}-pw",
                                                  "csrf": self.csrf("/login")})
        assert signed.status_code == 303
        return self.csrf("/")


def test_only_ops_sees_the_page_and_may_promote_or_roll_back() -> None:
    rig = Rig()
    assert rig.client.get("/models").status_code == 303  # signed out: to the sign-in form
    for name in ("ana", "vic"):
        token = rig.signed_in(name)
        assert 'href="/models"' not in rig.client.get("/").text
        assert rig.client.get("/models").status_code == 403, name
        for path in ("/models/promote", "/models/rollback"):
            sent = rig.client.post(path, data={"csrf": token, "model": "sentiment", "confirm": "yes"})
            assert sent.status_code == 403, (name, path)
    assert rig.models.calls == [] and [e.action for e in rig.ledger.entries] == ["sign-in", "sign-in"]
    rig.signed_in("ops")
    assert 'href="/models"' in rig.client.get("/").text and rig.client.get("/models").status_code == 200


def test_a_post_without_its_csrf_token_is_refused() -> None:
    rig = Rig()
    token = rig.signed_in("ops")
    for data in ({}, {"csrf": token[:-1] + ("A" if token[-1] != "A" else "B")}):
        sent = rig.client.post("/models/promote", data={**data, "model": "sentiment", "confirm": "yes"})
        assert sent.status_code == 403
    assert rig.models.calls == []


def test_promote_asks_for_confirmation_first_then_calls_the_cli_code_and_audits_before_and_after() -> None:
    rig = Rig()
    token = rig.signed_in("ops")
    asked = rig.client.post("/models/promote", data={"csrf": token, "model": "sentiment"})
    assert asked.status_code == 200 and "Confirm: promote sentiment" in asked.text
    assert 'name="confirm" value="yes"' in asked.text and "canary on 10.0%" in asked.text
    assert rig.models.calls == [] and rig.ledger.entries[-1].action == "sign-in"  # nothing done, nothing audited
    done = rig.client.post("/models/promote", data={"csrf": token, "model": "sentiment", "confirm": "yes"})
    assert done.status_code == 303 and done.headers["location"] == "/models"
    assert rig.models.calls == [("promote", "sentiment", None, "console: promote by ops")]
    entry = rig.ledger.entries[-1]
    assert (entry.username, entry.action, entry.target) == ("ops", "promote", "sentiment")
    assert entry.before == {"production": 2, "candidate": 3, "mode": "canary", "share": 0.1}
    assert entry.after == {"production": 3, "candidate": None, "mode": "none", "share": 0.0, "serving": 3}


def test_rollback_takes_its_version_and_a_refusal_is_a_409_with_an_audited_error() -> None:
    rig = Rig()
    token = rig.signed_in("ops")
    asked = rig.client.post("/models/rollback", data={"csrf": token, "model": "topic", "to": "1"})
    assert 'name="to" value="1"' in asked.text and rig.models.calls == []
    rig.client.post("/models/rollback", data={"csrf": token, "model": "topic", "to": "1", "confirm": "yes"})
    assert rig.models.calls[-1] == ("rollback", "topic", 1, "console: rollback by ops")
    assert rig.ledger.entries[-1].before["mode"] == "shadow" and rig.ledger.entries[-1].after["mode"] == "none"
    rig.models.refuse = ModelActionRefused("topic has no candidate; name the version to promote")
    refused = rig.client.post("/models/promote", data={"csrf": token, "model": "topic", "confirm": "yes"})
    assert refused.status_code == 409 and "no candidate" in refused.text
    failed = rig.ledger.entries[-1]
    assert failed.action == "promote failed" and "no candidate" in failed.after["error"]
    rig.models.refuse = ServiceError("Triton at http://x is unreachable")
    assert rig.client.post("/models/promote", data={"csrf": token, "model": "topic", "confirm": "yes"}).status_code \
        == 503
    assert rig.ledger.entries[-1].action == "promote failed"
    for bad in ({"model": "vision"}, {"model": "topic", "version": "two"}):
        assert rig.client.post("/models/promote", data={"csrf": token, "confirm": "yes", **bad}).status_code == 400


def test_the_page_lists_versions_roles_drift_cards_and_feedback_since_the_serving_version_was_trained() -> None:
    rig = Rig()
    rig.signed_in("ops")
    page = rig.client.get("/models").text
    sentiment, topic = page.split('id="model-topic"')
    rows = re.findall(r'<tr data-version="(\d+)">.*?<span class="badge role">([^<]+)</span>', sentiment, re.S)
    assert rows == [("3", "canary"), ("2", "production"), ("1", "-")]
    assert "10% of message ids" in sentiment and "class_mix 0.314" in sentiment
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sentiment and "<script>" not in page  # the card, escaped
    assert "Feedback since v2 was trained (2026-12-01 00:00:00)" in sentiment
    counts = dict(re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td></tr>", sentiment))
    assert counts == {"negative": "2", "neutral": "0", "positive": "1"}  # the correction before training left out
    assert "agreement 90.0% on 50 messages" in topic and "Triton unreachable" in topic
    assert 'class="promote"' in topic and 'class="rollback"' in topic


def test_feedback_since_counts_one_models_labels_after_a_time() -> None:
    records = FakeModels().feedback()
    assert feedback_since(records, "sentiment", None) == {"negative": 3, "neutral": 0, "positive": 1}
    topic = feedback_since(records, "topic", TRAINED)
    assert list(topic) == TOPIC and topic["Earnings"] == 1 and sum(topic.values()) == 1


def test_without_a_model_registry_the_page_is_a_404() -> None:
    rig = Rig(with_models=False)
    rig.signed_in("ops")
    assert rig.client.get("/models").status_code == 404
