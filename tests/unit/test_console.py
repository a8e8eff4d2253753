"""The analyst console through its HTTP interface, with fake collaborators: sign-in and its rate limit, sessions,
CSRF, roles, the records ack and relabel hand to Kafka (the CLI's own), and the audit of every action."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from models.feedback import Feedback, ScoredMessage, feedback_for_message
from tests.fakes import FakeClock
from tonewatch.console.app import create_app
from tonewatch.console.auth import User, add_user, load_users
from tonewatch.console.ports import AuditEntry, InboxFilter, Verdict
from tonewatch.console.web import safe_next
from tonewatch.core.service_sections import ConsoleSettings, StoreSettings
from tonewatch.core.settings import Settings
from tonewatch.notify.store import ack_record

IID = "inc-0123456789abcdef"
T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
MESSAGE = {"id": "m1", "ts": T0.replace(second=20), "source": "chat", "text": "TSLA is done, call <PHONE>",
           "sentiment": "neutral", "p_negative": 0.91, "probs": {}, "topic": "Stock Movement", "tickers": ["TSLA"],
           "sectors": [], "model_versions": {"sentiment": "3", "topic": "2"}}
INCIDENT = {"incident_id": IID, "version": 2, "severity": "critical", "status": "updated", "tickers": ["TSLA"],
            "opened_at": T0, "verdict": None, "payload": {
                "id": IID, "headline": "TSLA", "children": [{
                    "id": "a1", "dimension": "ticker", "key": "TSLA", "status": "firing", "severity": "critical",
                    "volume": 40, "score": 6.2, "message_ids": ["m1"],
                    "window": {"start": "2026-01-05T14:00:00Z", "end": "2026-01-05T14:01:00Z"}}],
                "top_messages": []}}
WINDOWS = [{"window_start": T0.replace(minute=m), "window_end": T0.replace(minute=m + 1), "share": s,
            "baseline": 0.2} for m, s in ((0, 0.6), (1, 0.3))]
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # fast hashes: the tests check logic, not cost


class Hasher(PasswordHasher):
    """Counts password checks: a refused sign-in over the limit must not reach one."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


class FakeReader:
    def __init__(self) -> None:
        self.filters: list[InboxFilter] = []

    def incidents(self, where: InboxFilter, limit: int) -> list[dict[str, Any]]:
        self.filters.append(where)
        return [INCIDENT]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return INCIDENT if incident_id == IID else None

    def key_windows(self, dimension: str, key: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [w for w in WINDOWS if start <= w["window_start"] < end]

    def latest_window(self, dimension: str, key: str) -> datetime | None:
        return WINDOWS[-1]["window_start"] if key == "TSLA" else None

    def trend(self, key: str, since: datetime) -> list[dict[str, Any]]:
        return WINDOWS

    def alerts(self, key: str, since: datetime) -> list[dict[str, Any]]:
        return []

    def messages(self, ids: Any, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [MESSAGE] if "m1" in ids and start <= MESSAGE["ts"] < end else []

    def message(self, message_id: str, ts: datetime) -> dict[str, Any] | None:
        return MESSAGE if (message_id, ts) == (MESSAGE["id"], MESSAGE["ts"]) else None

    def ticker_messages(self, ticker: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        return [MESSAGE]


class FakeLedger:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []
        self.verdicts: dict[str, Verdict] = {}

    def audit(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    def save_verdict(self, verdict: Verdict, entry: AuditEntry) -> None:
        self.verdicts[verdict.incident_id] = verdict
        self.entries.append(entry)

    def actions(self) -> list[str]:
        return [e.action for e in self.entries]


class FakeWriter:
    def __init__(self) -> None:
        self.acks: list[dict[str, Any]] = []
        self.labels: list[Feedback] = []

    def ack(self, record: dict[str, Any]) -> None:
        self.acks.append(record)

    def feedback(self, records: list[Feedback]) -> None:
        self.labels.extend(records)


class Rig:
    def __init__(self, attempts: int = 5, base_url: str = "http://testserver") -> None:
        self.reader, self.ledger, self.writer = FakeReader(), FakeLedger(), FakeWriter()
        self.clock, self.hasher = FakeClock(1_800_000_000.0), Hasher()
        users = {name: User(name, role, CHEAP.hash(f"{name}-pw"))  # type: ignore[arg-type]
                 for name, role in (("ana", "analyst"), ("vic", "viewer"), ("ops", "ops"))}
        settings = ConsoleSettings(login_attempts=attempts, session_hours=1)
        app = create_app(settings, users, self.reader, self.ledger, self.writer, hasher=self.hasher, clock=self.clock)
        self.client = TestClient(app, base_url=base_url, follow_redirects=False)

    def csrf(self, path: str = "/login") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    def login(self, name: str, password: str | None = None) -> Any:
        """A sign-in from a fresh browser (no cookie yet)."""
        self.client.cookies.clear()
        return self.client.post("/login", data={"username": name, "password": password or f"{name}-pw",
                                                "csrf": self.csrf()})

    def signed_in(self, name: str) -> str:
        assert self.login(name).status_code == 303
        return self.csrf("/")


def test_sign_in_works_and_a_wrong_password_is_refused() -> None:
    rig = Rig()
    assert rig.client.get("/").headers["location"] == "/login?next=%2F"
    refused = rig.login("ana", "wrong")
    assert refused.status_code == 401 and "Wrong user name or password" in refused.text
    assert rig.client.get("/").status_code == 303  # still signed out
    checked = rig.hasher.verified
    assert rig.login("nobody", "ana-pw").status_code == 401
    assert rig.hasher.verified == checked + 1  # an unknown name costs a hash check too: names cannot be probed
    ok = rig.login("ana")
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    page = rig.client.get("/")
    assert page.status_code == 200 and "ana (analyst)" in page.text and 'http-equiv="refresh" content="30"' in page.text


def test_failed_sign_ins_are_limited_per_user_and_address_without_checking_the_password() -> None:
    rig = Rig(attempts=3)
    for _ in range(3):
        assert rig.login("ana", "guess").status_code == 401
    checked = rig.hasher.verified
    limited = rig.login("ana")  # the right password, but over the limit
    assert limited.status_code == 429 and limited.headers["retry-after"] == "300"
    assert rig.hasher.verified == checked  # refused before any password check
    assert rig.login("vic").status_code == 303  # another user from the same address is not limited
    rig.clock.now += 301  # the failures leave the window
    assert rig.login("ana").status_code == 303


def test_a_session_expires_and_a_forged_cookie_is_no_session() -> None:
    rig = Rig()
    rig.signed_in("ana")
    assert rig.client.get("/").status_code == 200
    rig.clock.now += 3601  # session_hours=1
    assert rig.client.get("/").status_code == 303
    rig.signed_in("ana")
    value = rig.client.cookies["tonewatch_console"]
    rig.client.cookies.set("tonewatch_console", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert rig.client.get("/").status_code == 303


@pytest.mark.parametrize(("base_url", "secure"), [("http://testserver", False), ("https://testserver", True)])
def test_the_session_cookie_is_httponly_strict_and_secure_over_https(base_url: str, secure: bool) -> None:
    rig = Rig(base_url=base_url)
    form = rig.client.get("/login")
    signed = rig.login("ana")
    assert signed.status_code == 303
    for response in (form, signed):  # the sign-in form's cookie and the signed-in one
        cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "tonewatch_console" in v)
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert ("secure" in flags) is secure


def test_a_post_without_its_csrf_token_is_refused() -> None:
    rig = Rig()
    assert rig.client.post("/login", data={"username": "ana", "password": "ana-pw"}).status_code == 403
    token = rig.signed_in("ana")
    assert rig.client.post(f"/incidents/{IID}/ack", data={"note": "x"}).status_code == 403
    assert rig.client.post(f"/incidents/{IID}/ack", data={"csrf": token[:-1] + "é"}).status_code == 403
    assert rig.client.post("/relabel", data={"message_id": "m1", "ts": MESSAGE["ts"].isoformat(),
                                             "label": "negative"}).status_code == 403
    assert rig.client.post(f"/incidents/{IID}/verdict", data={"verdict": "false_alarm"}).status_code == 403
    assert rig.client.post("/logout").status_code == 403
    assert rig.writer.acks == [] and rig.writer.labels == [] and rig.ledger.verdicts == {}
    assert rig.client.post(f"/incidents/{IID}/ack", data={"csrf": token}).status_code == 303  # the right one works


def test_a_viewer_can_read_but_gets_403_on_every_action() -> None:
    rig = Rig()
    token = rig.signed_in("vic")
    page = rig.client.get(f"/incidents/{IID}")
    assert page.status_code == 200 and "/relabel" not in page.text and "/ack" not in page.text
    posts = [(f"/incidents/{IID}/ack", {}), (f"/incidents/{IID}/verdict", {"verdict": "true_alarm"}),
             ("/relabel", {"message_id": "m1", "ts": MESSAGE["ts"].isoformat(), "label": "negative"})]
    for path, data in posts:
        assert rig.client.post(path, data={**data, "csrf": token}).status_code == 403, path
    assert rig.writer.acks == [] and rig.writer.labels == [] and rig.ledger.verdicts == {}
    assert rig.ledger.actions() == ["sign-in"]


def test_ack_hands_the_writer_the_record_tonewatch_alerts_ack_writes() -> None:
    rig = Rig()
    token = rig.signed_in("ana")
    back = "/?severity=critical"
    response = rig.client.post(f"/incidents/{IID}/ack", data={"csrf": token, "note": " looking ", "next": back})
    assert response.status_code == 303 and response.headers["location"] == back
    [record] = rig.writer.acks
    cli = ack_record(IID, "ana", "looking")  # what `tonewatch alerts ack IID --by ana --note looking` builds
    assert record == {**cli, "at": record["at"]} and abs(record["at"] - cli["at"]) < 5
    assert rig.client.post("/incidents/inc-unknown/ack", data={"csrf": token}).status_code == 404


def test_relabel_hands_the_writer_the_record_tonewatch_feedback_add_writes() -> None:
    rig = Rig()
    token = rig.signed_in("ana")
    ts = MESSAGE["ts"].isoformat()
    for model, label in (("sentiment", "Negative"), ("topic", "earnings")):
        response = rig.client.post("/relabel", data={"csrf": token, "message_id": "m1", "ts": ts, "model": model,
                                                     "label": label, "next": f"/incidents/{IID}"})
        assert response.status_code == 303 and response.headers["location"] == f"/incidents/{IID}"
    # `tonewatch feedback add --message-id m1 --label L --model M --by ana`: text and source from the scored message
    stored = {"m1": ScoredMessage(MESSAGE["text"], MESSAGE["source"])}
    cli = [feedback_for_message(lambda ids: stored, message_id="m1", model=m, label=lab, by="ana")
           for m, lab in (("sentiment", "negative"), ("topic", "Earnings"))]
    assert [fb.model_dump(exclude={"at"}) for fb in rig.writer.labels] == [fb.model_dump(exclude={"at"}) for fb in cli]
    assert [fb.source for fb in rig.writer.labels] == ["chat", "chat"]
    bad = {"csrf": token, "message_id": "m1", "ts": ts, "label": "bullish"}
    assert rig.client.post("/relabel", data=bad).status_code == 400
    assert rig.client.post("/relabel", data={**bad, "label": "negative", "ts": T0.isoformat()}).status_code == 404
    assert len(rig.writer.labels) == 2


def test_every_action_is_audited_with_before_and_after() -> None:
    rig = Rig(attempts=2)
    rig.login("ana", "guess")
    rig.login("ana", "guess")
    rig.login("ana", "guess")  # over the limit
    rig.clock.now += 301
    token = rig.signed_in("ana")
    rig.client.post(f"/incidents/{IID}/ack", data={"csrf": token})
    rig.client.post("/relabel", data={"csrf": token, "message_id": "m1", "ts": MESSAGE["ts"].isoformat(),
                                      "label": "negative"})
    rig.client.post(f"/incidents/{IID}/verdict", data={"csrf": token, "verdict": "false_alarm", "note": "a meme"})
    assert rig.ledger.actions() == ["sign-in refused"] * 3 + ["sign-in", "ack", "relabel", "verdict"]
    refused, limited = rig.ledger.entries[0], rig.ledger.entries[2]
    assert (refused.username, refused.target) == ("ana", "testclient") and "password" in refused.after["reason"]
    assert "too many" in limited.after["reason"]
    ack, relabel, verdict = rig.ledger.entries[4:]
    seen = {"version": 2, "status": "updated", "severity": "critical", "verdict": None}  # as the analyst saw it
    assert (ack.username, ack.target, ack.after, ack.before) == ("ana", IID, rig.writer.acks[0], seen)
    assert relabel.before == {"model": "sentiment", "label": "neutral"} and relabel.after["label"] == "negative"
    assert verdict.after == {"verdict": "false_alarm", "note": "a meme", "by": "ana"} and verdict.before is None
    assert rig.ledger.verdicts[IID] == Verdict(IID, "false_alarm", "ana", "a meme")


def test_the_inbox_passes_its_filters_to_the_store_and_refuses_unknown_values() -> None:
    rig = Rig()
    rig.signed_in("ana")
    rig.client.get("/?severity=critical&dimension=ticker&key=tsla&status=resolved")
    rig.client.get("/?severity=&dimension=&key=&status=")
    assert rig.reader.filters[-2:] == [InboxFilter("critical", "ticker", "tsla", "resolved"), InboxFilter()]
    assert rig.client.get("/?severity=apocalyptic").status_code == 400


def test_the_incident_page_charts_each_child_and_offers_relabel_forms() -> None:
    rig = Rig()
    rig.signed_in("ana")
    page = rig.client.get(f"/incidents/{IID}")
    assert page.status_code == 200
    assert page.text.count('<polyline class="share"') == 1 and 'class="firing"' in page.text
    assert "TSLA is done, call &lt;PHONE&gt;" in page.text and "sentiment v3" in page.text
    assert page.text.count('action="/relabel"') == 2
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert rig.client.get("/incidents/inc-nope").status_code == 404
    ticker = rig.client.get("/tickers?q=tsla")
    assert ticker.headers["location"] == "/tickers/TSLA"
    assert '<polyline class="share"' in rig.client.get("/tickers/TSLA").text


@pytest.mark.parametrize(("given", "expected"), [("/incidents/x", "/incidents/x"), ("//evil.example", "/"),
                                                 ("/\\evil.example", "/"), ("https://evil.example", "/"), ("", "/")])
def test_only_local_paths_are_followed_after_a_form(given: str, expected: str) -> None:
    assert safe_next(given) == expected


def test_add_user_writes_a_private_file_that_sign_in_reads(tmp_path: Path) -> None:
    path = tmp_path / "run" / "users.json"
    add_user(path, "ana", "analyst", "s3cret", CHEAP)
    add_user(path, "vic", "viewer", "other", CHEAP)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = load_users(path)
    assert {u.name: u.role for u in users.values()} == {"ana": "analyst", "vic": "viewer"}
    assert CHEAP.verify(users["ana"].hash, "s3cret") and "s3cret" not in path.read_text()
    with pytest.raises(ValueError, match="role"):
        add_user(path, "eve", "admin", "x", CHEAP)


def test_the_cli_adds_users_and_refuses_to_serve_without_a_store_or_users(tmp_path: Path) -> None:
    from tonewatch.cli import app

    users = tmp_path / "users.json"
    settings = Settings(store=StoreSettings(), console=ConsoleSettings(users_file=users))
    runner = CliRunner()
    no_store = runner.invoke(app, ["console"], obj=settings)
    assert no_store.exit_code == 2 and "TONEWATCH_STORE__DSN" in no_store.output
    with_store = settings.updated(store__dsn="postgresql://u:p@127.0.0.1:1/db")
    no_users = runner.invoke(app, ["console"], obj=with_store)
    assert no_users.exit_code == 2 and "add-user" in no_users.output
    added = runner.invoke(app, ["console", "add-user", "ana", "--role", "ops", "--password-stdin"], input="pw 1\n",
                          obj=settings)
    assert added.exit_code == 0, added.output
    assert PasswordHasher().verify(load_users(users)["ana"].hash, "pw 1")


def test_the_console_does_not_import_training_code() -> None:
    code = ("import sys, tonewatch.console.app, tonewatch.console.pg, tonewatch.commands.console; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'onnxruntime') "
            "or m in ('models.train', 'models.finetune', 'models.retrain')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
