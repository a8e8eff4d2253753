"""The console's Models page in a real browser (Playwright driving Debian's chromium) against ``tonewatch console``
on a real Kafka, PostgreSQL and a Triton serving the trivial models (benchmarks/trivial_repo, loads in seconds),
sentiment v2 on a 20% canary beside production v1, topic v2 in shadow: an ops user sees the roles, the shadow's
agreement read from the scored topic, drift and feedback, promotes the canary through the confirm step, and
``tonewatch models status``'s function then shows v2 as production; a viewer's promote is a 403."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from argon2 import PasswordHasher
from playwright.sync_api import Browser, Page
from pydantic import SecretStr

from models.artifact import CARD, HEAD_FILE, MANIFEST, Manifest, model_card, now_iso
from models.feedback import make_feedback
from models.feedback import publish as publish_feedback
from models.labels import LABELS
from models.rollout import events
from models.rollout.driver import status
from models.triton_admin import load_model
from streams.control.drift import DriftEvent
from tests.integration.console_proc import running_console
from tests.integration.postgres import running_postgres
from tonewatch.console.auth import add_user
from tonewatch.core.kafka_io import ensure_topics, producer
from tonewatch.core.settings import Settings
from tonewatch.perf.trivial import TRIVIAL_REPO
from tonewatch.stack import worker_env
from tonewatch.stack.procs import free_port
from tonewatch.stack.triton import start_triton, stop_triton
from tonewatch.store.rows import to_row
from tonewatch.store.schema import migrate
from tonewatch.store.writer import StoreWriter

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERS = {"olga": ("ops", "olga's long passphrase"), "vic": ("viewer", "vic's long passphrase")}
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # verify reads the parameters from the hash


def _version(repo: Path, name: str, version: int) -> None:
    """The trivial model as ``version``, with the artifact ``models.rollout.driver.servable`` checks: a manifest,
    a head whose output size is the label count, and a model card."""
    folder = repo / name / str(version)
    shutil.copytree(TRIVIAL_REPO / name / "1", folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    manifest = Manifest(name=name, version=version, labels=LABELS[name], encoder={"kind": "package"}, max_length=32,
                        hidden=8, metrics={"weighted_f1": 0.5 + version / 10}, created=now_iso(), parent=None,
                        data="trivial (browser test)")
    (folder / "artifact").mkdir()
    from safetensors.numpy import save_file

    save_file({"weight": np.zeros((len(LABELS[name]), 8), np.float32)}, str(folder / "artifact" / HEAD_FILE))
    (folder / "artifact" / MANIFEST).write_text(json.dumps(manifest.__dict__))
    (folder / "artifact" / CARD).write_text(model_card(manifest))


def _shadow_scored(settings: Settings, shadow_labels: list[str]) -> None:
    """Scored records as the worker writes them in a topic shadow of v2: production v1 said Earnings each time."""
    topic = settings.kafka.topic("scored")
    ensure_topics(settings.kafka, [topic])
    prod = producer(settings.kafka)
    try:
        for i, label in enumerate(shadow_labels):
            record = {"id": f"s{i}", "topic": "Earnings", "model_versions": {"topic": "1"},
                      "candidate": {"topic": {"version": 2, "label": label}}}
            prod.send(topic, key=f"s{i}".encode(), value=json.dumps(record).encode())
        prod.flush()
    finally:
        prod.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Kafka, PostgreSQL (one drift event in it) and Triton; sentiment v2 on canary beside production v1."""
    from tonewatch.stack.kafka import start_kafka, stop_kafka

    run_dir = tmp_path_factory.mktemp("console-models")
    repo = run_dir / "repo"
    for name in ("sentiment", "topic"):
        (repo / name).mkdir(parents=True)
        shutil.copyfile(TRIVIAL_REPO / name / "config.pbtxt", repo / name / "config.pbtxt")
        for version in (1, 2):
            _version(repo, name, version)
    base = Settings().updated(run_dir=REPO / ".tonewatch", triton__model_repository=repo,  # Kafka's jars there
                              triton__model_env_path=Path(sys.prefix), triton__cpu_threads=1, rollout__settle_s=0.5)
    kafka = start_kafka(base, run_dir / "kafka")
    triton = start_triton(base, run_dir / "triton")
    try:
        with running_postgres(run_dir / "postgres") as pg:
            settings = base.updated(
                kafka__bootstrap=kafka.bootstrap, run_dir=run_dir, store__dsn=SecretStr(pg.dsn),
                triton__http_url=triton.http_url, triton__grpc_url=triton.grpc_url, console__port=free_port(),
                console__users_file=run_dir / "console-users.json")
            drift = DriftEvent("sentiment", "1", "class_mix", 0.314, 500, 0.2).as_dict(now_iso())
            with psycopg.connect(pg.dsn) as conn:
                migrate(conn)
                StoreWriter(conn).write({"model_events": [to_row("model_events", drift)]})
            load_model(settings, "sentiment", versions=[1, 2])
            load_model(settings, "topic", versions=[1])
            events.publish(settings, "sentiment", 1, "promoted", reason="browser test")
            events.publish(settings, "sentiment", 2, "canary", share=0.2, reason="browser test")
            events.publish(settings, "topic", 1, "promoted", reason="browser test")
            events.publish(settings, "topic", 2, "shadow", reason="browser test")
            _shadow_scored(settings, ["Earnings", "Earnings", "IPO", "Earnings"])
            publish_feedback(settings, [make_feedback(message_id=f"m{i}", model="sentiment", label=label,
                                                      text=f"text {i}", by="ana")
                                        for i, label in enumerate(("negative", "negative", "positive"))])
            yield settings
    finally:
        stop_triton(triton)
        stop_kafka(kafka)


@pytest.fixture(scope="module")
def console(stack: Settings) -> Iterator[str]:
    for name, (role, password) in USERS.items():
        add_user(stack.console.users_file, name, role, password, CHEAP)
    env = {k: v for k, v in worker_env(stack).items() if k != "TONEWATCH_SCREENSHOT_DIR"}  # not a setting
    with running_console(stack, env) as url:
        yield url


def _signed_in(browser: Browser, url: str, name: str) -> Page:
    page = browser.new_context(base_url=url).new_page()
    page.set_default_timeout(60_000)  # promote waits for Triton's loads and the settle time
    page.goto("/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", USERS[name][1])
    page.click("form.login button")
    assert page.locator("form.who span").inner_text() == f"{name} ({USERS[name][0]})"
    return page


def _role(page: Page, model: str, version: int) -> str:
    return page.locator(f"#model-{model} tr[data-version='{version}'] .badge").inner_text()


def test_ops_promotes_the_canary_and_models_status_shows_it(browser: Browser, console: str, stack: Settings) -> None:
    page = _signed_in(browser, console, "olga")
    page.click("header nav a[href='/models']")
    assert (_role(page, "sentiment", 2), _role(page, "sentiment", 1)) == ("canary", "production")
    sentiment = page.locator("#model-sentiment")
    assert "20% of message ids" in sentiment.inner_text() and "class_mix 0.314" in sentiment.inner_text()
    assert "# sentiment v2" in sentiment.locator("tr[data-version='2'] pre.card").text_content()  # type: ignore[operator]
    assert "agreement 75.0% on 4 messages" in page.locator("#model-topic").inner_text()  # 3 of the 4 agree
    counts = sentiment.locator("table.feedback").inner_text()
    assert "negative\t2" in counts and "positive\t1" in counts
    sentiment.locator("tr[data-version='2'] button.promote").click()
    assert page.locator("h1").inner_text() == "Confirm: promote sentiment"
    assert status(stack, "sentiment")["production"] == 1  # nothing changes before the confirmation
    page.click("form.confirm button")
    page.wait_for_url(f"{console}/models")
    assert _role(page, "sentiment", 2) == "production"
    after = status(stack, "sentiment")  # what `tonewatch models status sentiment` prints
    assert (after["production"], after["candidate"], after["mode"]) == (2, None, "none")
    with psycopg.connect(stack.store.dsn.get_secret_value()) as conn:  # type: ignore[union-attr]
        audited = conn.execute("SELECT username, before, after FROM audit WHERE action = 'promote'").fetchall()
    assert audited == [("olga", {"production": 1, "candidate": 2, "mode": "canary", "share": 0.2},
                        {"production": 2, "candidate": None, "mode": "none", "share": 0.0, "serving": 2})]


def test_a_viewer_gets_403_on_the_page_and_on_promote(browser: Browser, console: str, stack: Settings) -> None:
    viewer = _signed_in(browser, console, "vic")
    assert viewer.locator("header nav a[href='/models']").count() == 0
    assert viewer.request.get("/models", max_redirects=0).status == 403
    token = viewer.locator("form.who input[name=csrf]").get_attribute("value")
    answer = viewer.request.post("/models/promote", form={"model": "topic", "version": "1", "confirm": "yes",
                                                          "csrf": token or ""}, max_redirects=0)
    assert answer.status == 403 and "The viewer role can only read." in answer.text()
    assert [e.event for e in events.history(stack, "topic")] == ["promoted", "shadow"]
