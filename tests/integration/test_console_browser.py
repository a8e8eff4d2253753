"""The analyst console in a real browser: Playwright drives Debian's chromium against ``tonewatch console`` run as a
subprocess on a real Kafka and a real PostgreSQL filled with an incident built by the pipeline's own functions.
Sign-in, the inbox, an incident's charts and messages, ack and relabel read back from their topics, a viewer's and
a token-less POST's 403s. The inbox and incident screenshots go to $TONEWATCH_SCREENSHOT_DIR (the README's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, Page
from pydantic import SecretStr

from models.feedback import ScoredMessage, feedback_for_message
from streams.records import Scored
from streams.windows.alerts import alert_payload
from streams.windows.detector import ClosedWindow, Driver, Transition, Window, alert_id
from streams.windows.trends import trend_record
from tests.integration.console_proc import running_console
from tests.integration.postgres import running_postgres
from tonewatch.console.auth import Sessions
from tonewatch.core.kafka_io import read_json
from tonewatch.core.settings import Settings
from tonewatch.notify.incidents import group_alerts
from tonewatch.notify.store import ack_record
from tonewatch.stack import worker_env
from tonewatch.stack.procs import free_port
from tonewatch.store.rows import to_row
from tonewatch.store.schema import migrate
from tonewatch.store.writer import StoreWriter

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 9, 14, 30, tzinfo=UTC)  # the firing window's start: fixed, so the screenshots are stable
WINDOW_S = 60
SECTOR = "Consumer Discretionary"
USERS = {"ana": ("analyst", "ana's long passphrase"), "vic": ("viewer", "vic's long passphrase")}
SECRET = "browser-test-session-secret"  # the test reads the console's cookies back with it
VIEWPORT = {"width": 1280, "height": 800}
# not a setting: the console's children would refuse it as a misspelt TONEWATCH_* one, so they do not get it
SHOTS = "TONEWATCH_SCREENSHOT_DIR"
MESSAGES = [  # (id, source, masked text, sentiment, p_negative): the chat ones as the worker masks them
    ("m-news-1", "news", "Tesla recalls 120,000 Model Y over a steering fault; TSLA slides premarket", "negative",
     0.94),
    ("m-chat-1", "chat", "TSLA is done, dumping all of it. DM me at <EMAIL>", "negative", 0.88),
    ("m-chat-2", "chat", "is the TSLA recall as bad as it sounds?? call me <PHONE>", "neutral", 0.41),
]
RELABELLED = MESSAGES[2]


def _scored() -> list[dict[str, Any]]:
    out = []
    for i, (mid, source, text, sentiment, p) in enumerate(MESSAGES):
        probs = {"negative": p, "neutral": round((1 - p) * 0.8, 4), "positive": round((1 - p) * 0.2, 4)}
        ts = T0 + timedelta(seconds=10 + 15 * i)
        out.append(json.loads(Scored(
            id=mid, source=source, ts=ts, text=text, tickers=("TSLA",), sectors=(SECTOR,), sentiment=sentiment,  # type: ignore[arg-type]
            sentiment_probs=probs, topic="Company | Product News", topic_probs={"Company | Product News": 0.9},
            model_versions={"sentiment": "3", "topic": "2"}, scored_at=ts, inference_ms=4.0).to_json()))
    return out


def _records() -> dict[str, list[dict[str, Any]]]:
    """30 calm windows of TSLA and its sector, the firing one at T0, then the way back down; one alert per key,
    grouped into one incident by the notifier's own grouping."""
    drivers = tuple(Driver(mid, text, source, p, ("TSLA",)) for mid, source, text, _, p in MESSAGES)
    trends, alerts = [], []
    for dimension, key, count in (("ticker", "TSLA", 25), ("sector", SECTOR, 60)):
        for i in range(-30, 6):
            share = 0.72 if i == 0 else [0.55, 0.4, 0.3, 0.25, 0.2][i - 1] if i > 0 else 0.12 + 0.025 * (i * 7 % 5)
            negative = round(share * count)
            w = Window(start=(T0 + timedelta(minutes=i)).timestamp(), count=count, negative=negative,
                       p_negative_sum=negative * 0.9, adjusted_sum=float(negative),
                       drivers=drivers if i == 0 else (), model_versions={"sentiment": "3", "topic": "2"})
            trends.append(trend_record(dimension, key, ClosedWindow(w, baseline=0.18, alerting=i >= 0), WINDOW_S))
            if i == 0:
                t = Transition("firing", alert_id(dimension, key, w.start), w, baseline=0.18, score=6.4,
                               severity="critical" if dimension == "ticker" else "warning", reason="share")
                alerts.append(json.loads(json.dumps(alert_payload(t, dimension, key, WINDOW_S, 30))))
    incidents = group_alerts(alerts, gap_s=300, sectors={"TSLA": SECTOR})
    assert len(incidents) == 1, incidents
    return {"trends": trends, "alerts": alerts, "incidents": incidents, "scored": _scored()}


@pytest.fixture(scope="module")
def records() -> dict[str, list[dict[str, Any]]]:
    return _records()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, records: dict[str, list[dict[str, Any]]]) -> Iterator[Settings]:
    """A fresh Kafka and PostgreSQL, the store migrated and filled as the sink fills it."""
    from tonewatch.stack.kafka import start_kafka, stop_kafka

    run_dir = tmp_path_factory.mktemp("console-browser")
    base = Settings().updated(run_dir=REPO / ".tonewatch")  # the Kafka jars cached there
    kafka = start_kafka(base, run_dir / "kafka")
    try:
        with running_postgres(run_dir / "postgres") as pg:
            with psycopg.connect(pg.dsn) as conn:
                migrate(conn)
                StoreWriter(conn).write({kind: [to_row(kind, r) for r in recs] for kind, recs in records.items()})
            yield base.updated(kafka__bootstrap=kafka.bootstrap, run_dir=run_dir, store__dsn=SecretStr(pg.dsn),
                               console__port=free_port(), console__users_file=run_dir / "console-users.json",
                               console__session_secret=SecretStr(SECRET))
    finally:
        stop_kafka(kafka)


@pytest.fixture(scope="module")
def console(stack: Settings) -> Iterator[str]:
    """``tonewatch console`` as production runs it, its users added by ``tonewatch console add-user``."""
    env = {k: v for k, v in worker_env(stack).items() if k != SHOTS}
    for name, (role, password) in USERS.items():
        subprocess.run([sys.executable, "-m", "tonewatch", "console", "add-user", name, "--role", role,
                        "--password-stdin"], input=f"{password}\n", env=env, cwd=REPO, text=True,
                       capture_output=True, check=True, timeout=30)
    with running_console(stack, env) as url:
        yield url


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(SHOTS) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _page(browser: Browser, url: str) -> Page:
    page = browser.new_context(base_url=url, viewport=VIEWPORT).new_page()  # type: ignore[arg-type]
    page.set_default_timeout(10_000)
    return page


def _sign_in(page: Page, name: str, password: str | None = None) -> None:
    page.goto("/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password or USERS[name][1])
    page.click("form.login button")


def _signed_in(browser: Browser, url: str, name: str) -> Page:
    page = _page(browser, url)
    _sign_in(page, name)
    assert page.locator("form.who span").inner_text() == f"{name} ({USERS[name][0]})"
    return page


def _cookie(page: Page) -> str:
    [value] = [c["value"] for c in page.context.cookies() if c["name"] == "tonewatch_console"]
    return value


def test_sign_in_refuses_a_wrong_password_and_takes_the_right_one(browser: Browser, console: str) -> None:
    page = _page(browser, console)
    page.goto("/")
    assert page.url == f"{console}/login?next=%2F"
    _sign_in(page, "ana", "not ana's passphrase")
    assert page.locator("p.error").inner_text() == "Wrong user name or password."
    sessions = Sessions(SECRET, 8, time.time)
    refused = sessions.load(_cookie(page))
    assert refused is not None and refused.user is None  # the sign-in form's anonymous session, no user in it
    page.goto("/")
    assert page.url.startswith(f"{console}/login")
    _sign_in(page, "ana")
    assert page.url == f"{console}/" and page.locator("h1").inner_text() == "Incidents"
    signed = sessions.load(_cookie(page))
    assert signed is not None and (signed.user, signed.role) == ("ana", "analyst")


def test_the_inbox_lists_the_incident_and_its_page_shows_children_charts_and_messages(
        browser: Browser, console: str, records: dict[str, list[dict[str, Any]]], shots: Path) -> None:
    [incident] = records["incidents"]
    page = _signed_in(browser, console, "ana")
    link = page.locator(f'table.inbox a[href="/incidents/{incident["id"]}"]')
    assert link.inner_text() == "TSLA"
    page.screenshot(path=str(shots / "console-inbox.png"), full_page=True)
    link.click()
    assert page.url == f"{console}/incidents/{incident['id']}"
    children = page.locator("section.child")
    assert children.count() == 2
    for i, (dimension, key) in enumerate((("ticker", "TSLA"), ("sector", SECTOR))):
        child = children.nth(i)
        assert f"{dimension} = {key}" in child.locator("h3").inner_text()
        points = child.locator("svg polyline.share").get_attribute("points") or ""
        assert len(points.split()) == 36  # every stored window of the key, 30 before the firing one
        assert child.locator("svg rect.firing").count() == 1
    rows = page.locator("table.messages tbody tr")
    assert sorted(rows.locator("td.text").all_inner_texts()) == sorted(m[2] for m in MESSAGES)
    assert "sentiment v3" in rows.first.inner_text()
    page.screenshot(path=str(shots / "console-incident.png"), full_page=True)
    for name in ("console-inbox.png", "console-incident.png"):
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ack_and_relabel_from_the_page_write_the_clis_records(
        browser: Browser, console: str, stack: Settings, records: dict[str, list[dict[str, Any]]]) -> None:
    iid = records["incidents"][0]["id"]
    page = _signed_in(browser, console, "ana")
    page.goto(f"/incidents/{iid}")
    page.fill("div.actions input[name=note][aria-label='Ack note']", "on it: recall story")
    page.click("div.actions button:text-is('Ack')")
    assert page.url == f"{console}/incidents/{iid}"
    [ack] = read_json(stack.kafka, stack.kafka.topic("acks"))
    cli = ack_record(iid, "ana", "on it: recall story")  # `tonewatch alerts ack ID --by ana --note ...`
    assert ack == {**cli, "at": ack["at"]} and abs(ack["at"] - cli["at"]) < 30

    mid, source, text = RELABELLED[:3]
    row = page.locator("table.messages tbody tr", has_text=text)
    row.locator("form.relabel button[value=negative]").click()
    assert page.url == f"{console}/incidents/{iid}"
    [label] = read_json(stack.kafka, stack.kafka.topic("feedback"))
    # `tonewatch feedback add --message-id ID --label negative --by ana`: text and source from the scored message
    expected = feedback_for_message(lambda ids: {mid: ScoredMessage(text, source)}, message_id=mid,
                                    model="sentiment", label="negative", by="ana").model_dump(mode="json")
    assert label == {**expected, "at": label["at"]}


def test_a_viewer_gets_403_and_a_post_without_its_csrf_token_is_refused(
        browser: Browser, console: str, stack: Settings, records: dict[str, list[dict[str, Any]]]) -> None:
    iid = records["incidents"][0]["id"]
    mid, ts = records["scored"][0]["id"], records["scored"][0]["ts"]
    viewer = _signed_in(browser, console, "vic")
    viewer.goto(f"/incidents/{iid}")
    assert viewer.locator("form[action='/relabel']").count() == 0  # no forms for a viewer to start with
    token = viewer.locator("form.who input[name=csrf]").get_attribute("value")
    posts: list[tuple[str, dict[str, str | float | bool]]] = [
        (f"/incidents/{iid}/ack", {"note": "refused"}),
        ("/relabel", {"message_id": mid, "ts": ts, "label": "positive"}),
    ]
    for path, form in posts:
        answer = viewer.request.post(path, form={**form, "csrf": token or ""}, max_redirects=0)
        assert answer.status == 403 and "The viewer role can only read." in answer.text(), path

    analyst = _signed_in(browser, console, "ana")
    for path, form in posts:
        answer = analyst.request.post(path, form=form, max_redirects=0)
        assert answer.status == 403 and "did not come from this console" in answer.text(), path
    # nothing of the refused posts reached the topics (the previous test's ack and label may be there)
    acks = read_json(stack.kafka, stack.kafka.topic("acks"))
    labels = read_json(stack.kafka, stack.kafka.topic("feedback"))
    assert [a for a in acks if a["by"] == "vic" or a["note"] == "refused"] == []
    assert [fb for fb in labels if fb["by"] == "vic" or fb["label"] == "positive"] == []
