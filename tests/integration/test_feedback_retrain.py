"""Feedback through Kafka, the retrain job's gate, and drift events from a real worker (issue #6)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from models.data import load_dataset
from models.feedback import make_feedback, publish
from tests.integration.conftest import REPO, Worker
from tonewatch.core.kafka_io import ensure_topics, producer, read_json
from tonewatch.core.settings import Settings
from tonewatch.replay import replay
from tonewatch.stack import worker_env

pytestmark = pytest.mark.integration


def _cli(settings: Settings, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tonewatch", *args], env=worker_env(settings), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _prefixed(settings: Settings, **overrides: object) -> Settings:
    return settings.updated(kafka__topic_prefix=f"t{uuid.uuid4().hex[:10]}", **overrides)


def _produce(settings: Settings, topic: str, records: list[dict]) -> None:
    ensure_topics(settings.kafka, [settings.kafka.topic(topic)])
    prod = producer(settings.kafka)
    for r in records:
        prod.send(settings.kafka.topic(topic), key=r["id"].encode(), value=json.dumps(r).encode())
    prod.flush()
    prod.close()


def test_feedback_add_alert_list_export_round_trip(stack_settings: Settings, tmp_path: Path) -> None:
    s = _prefixed(stack_settings)
    _produce(s, "scored", [{"id": "n1", "text": "$TSLA plunges after recall", "sentiment": "neutral", "source": "chat"},
                           {"id": "c7", "text": "call me at [PHONE], buying more", "sentiment": "neutral"}])
    _produce(s, "alerts", [{"id": "ticker|TSLA|1767621600", "status": "firing", "top_messages": [
        {"message_id": "n2", "text": "Tesla recalls 2 million cars", "source": "news", "p_negative": 0.9},
        {"message_id": "n3", "text": "TSLA falls 5%", "source": "news", "p_negative": 0.8}]}])

    ok = _cli(s, "feedback", "add", "--message-id", "n1", "--label", "neutral", "--by", "ana")
    assert ok.returncode == 0, ok.stderr
    ok = _cli(s, "feedback", "add", "--message-id", "n1", "--label", "Negative", "--by", "bob", "--note", "recall")
    assert ok.returncode == 0, ok.stderr
    ok = _cli(s, "feedback", "add", "--message-id", "x9", "--model", "topic", "--label", "earnings", "--by", "ana",
              "--text", "EPS beats by 10c")
    assert ok.returncode == 0, ok.stderr
    ok = _cli(s, "feedback", "alert", "ticker|TSLA|1767621600", "--label", "neutral", "--by", "risk-desk")
    assert ok.returncode == 0 and "stored 2 labels" in ok.stdout, ok.stderr

    for args, why in ((("--message-id", "nope", "--label", "negative", "--by", "ana"), "--text"),
                      (("--message-id", "n1", "--label", "bullish", "--by", "ana"), "not one of"),
                      (("--message-id", "n1", "--model", "emotion", "--label", "joy", "--by", "ana"), "unknown model")):
        bad = _cli(s, "feedback", "add", *args)
        assert bad.returncode == 2 and why in bad.stderr, (bad.stdout, bad.stderr)
    bad = _cli(s, "feedback", "alert", "no-such-alert", "--label", "neutral", "--by", "ana")
    assert bad.returncode == 2 and "no-such-alert" in bad.stderr

    listed = _cli(s, "feedback", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {(r["model"], r["message_id"]): r for r in map(json.loads, listed.stdout.splitlines())}
    assert set(rows) == {("sentiment", "n1"), ("topic", "x9"), ("sentiment", "n2"), ("sentiment", "n3")}
    assert rows["sentiment", "n1"]["label"] == "negative" and rows["sentiment", "n1"]["by"] == "bob"
    assert rows["sentiment", "n1"]["text"] == "$TSLA plunges after recall"  # looked up in the scored topic
    assert rows["sentiment", "n1"]["source"] == "chat" and rows["sentiment", "n2"]["source"] == "news"  # and alert
    assert rows["sentiment", "n2"]["alert_id"] == "ticker|TSLA|1767621600"
    assert rows["topic", "x9"]["label"] == "Earnings"
    assert len(read_json(s.kafka, s.kafka.topic("feedback"))) == 5  # the log keeps both corrections of n1

    out = tmp_path / "fb.csv"
    done = _cli(s, "feedback", "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as fh:
        exported = sorted(map(tuple, csv.reader(fh)))
    assert exported == sorted([("text", "label", "source"), ("$TSLA plunges after recall", "negative", "chat"),
                               ("Tesla recalls 2 million cars", "neutral", "news"),
                               ("TSLA falls 5%", "neutral", "news")])


LIMIT = 100


@pytest.fixture
def retrain_settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    """A private copy of the sentiment repository, so a pushed version never reaches the shared Triton."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "triton_repo" / "sentiment", repo / "sentiment")
    # a head-only candidate on 100 texts is far below v1 on chat as well as overall: --margin 0.3 relaxes the
    # overall bar, this the chat one (tests/unit/test_domains.py tests the chat gate itself)
    return _prefixed(stack_settings, triton__model_repository=repo, retrain__reports_dir=tmp_path / "reports",
                     run_dir=tmp_path / "run", retrain__chat_tolerance=1.0)


def _retrain(s: Settings, *args: str) -> tuple[int, dict]:
    done = _cli(s, "retrain", "sentiment", "--mode", "head", "--limit", str(LIMIT), "--json", *args)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(1500)  # two head trainings and four evaluations on a shared 2-core CPU
def test_retrain_passes_with_clean_feedback_and_refuses_poisoned_feedback(retrain_settings: Settings) -> None:
    s = retrain_settings
    ds = load_dataset("sentiment")
    clean = [make_feedback(message_id="f1", model="sentiment", label="negative", by="ana",
                           text="Lender collapses as regulators seize deposits"),
             make_feedback(message_id="f2", model="sentiment", label="positive", by="ana", text=ds.test.texts[0])]
    publish(s, clean)

    code, report = _retrain(s, "--margin", "0.3", "--push")
    assert code == 0 and report["decision"] == "passed", report
    assert report["data"] == {"train": LIMIT, "val": LIMIT, "test": LIMIT, "feedback_rows": 2, "feedback_used": 1,
                              "feedback_new_texts": 1, "feedback_relabelled": 0, "feedback_dropped_held_out": 1}
    assert report["production"]["version"] == 1 and report["production"]["n"] == LIMIT
    assert report["pushed_version"] == 2
    pushed = json.loads((s.triton.model_repository / "sentiment" / "2" / "artifact" / "manifest.json").read_text())
    assert pushed["version"] == 2 and pushed["parent"] == 1 and "1 feedback rows" in pushed["data"]
    assert sum(pushed["reference"]["class_mix"]) == pytest.approx(1.0, abs=1e-3)
    assert len(pushed["reference"]["confidence_hist"]) == 10
    assert Path(report["report"]).is_file() and Path(report["report"]).with_suffix(".md").is_file()

    # every training text relabelled positive: the candidate collapses and the same margin refuses it
    poisoned = _prefixed(s)
    publish(poisoned, [make_feedback(message_id=f"p{i}", model="sentiment", label="positive", by="mallory", text=t)
                       for i, t in enumerate(ds.train.texts[:LIMIT])])
    code, report = _retrain(poisoned, "--margin", "0.3", "--push")
    assert code == 3 and report["decision"] == "refused", report
    assert report["data"]["feedback_relabelled"] == LIMIT and report["production"]["version"] == 2
    assert report["candidate"]["weighted_f1"] < report["production"]["weighted_f1"] - 0.3
    assert report["pushed_version"] is None and report["candidate"]["staged"] is None
    assert sorted(p.name for p in (s.triton.model_repository / "sentiment").iterdir()) == ["1", "2", "config.pbtxt"]
    md = Path(report["report"]).with_suffix(".md").read_text()
    assert "**refused**" in md and "production v2" in md


NEGATIVE = ["{} shares plunge after fraud probe widens", "{} crashes as losses mount and guidance is cut",
            "{} tumbles after bankruptcy warning", "{} sinks on massive recall and lawsuit",
            "{} stock collapses after CEO arrested"]
TICKERS = ["TSLA", "AAPL", "MSFT", "AMZN", "NFLX", "META"]


def _negative_feed(path: Path, start: int, n: int) -> Path:
    lines = [json.dumps({"id": f"d{start + i}", "source": "news", "ts": f"2026-01-05T14:{(start + i) % 60:02d}:00Z",
                         "text": NEGATIVE[i % len(NEGATIVE)].format(TICKERS[i % len(TICKERS)])}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait_log(worker: Worker, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (log := worker.log_path.read_text(errors="replace")):
        if time.monotonic() > deadline or not worker.alive() or "no drift reference" in log:
            pytest.fail(f"no '{text}' in the worker log:\n{worker.log_tail()}")
        time.sleep(1.0)


@pytest.mark.timeout(1200)  # a version without a stored reference has it computed by the worker
def test_a_worker_fed_only_bad_news_reports_drift(pipeline: Callable[..., Worker], tmp_path: Path) -> None:
    worker = pipeline(retrain__drift_window=20, retrain__drift_threshold=0.2)
    s = worker.settings
    replay(s, _negative_feed(tmp_path / "a.jsonl", 0, 10))  # the first record starts loading the reference
    _wait_log(worker, "drift reference for sentiment v1 ready", 600)
    replay(s, _negative_feed(tmp_path / "b.jsonl", 10, 30))
    deadline = time.monotonic() + 300
    events: list[dict] = []
    while time.monotonic() < deadline and not any(e["model"] == "sentiment" for e in events):
        events = [e for e in read_json(s.kafka, s.kafka.topic("model-events")) if e.get("event") == "drift"]
        time.sleep(1.0)
    sentiment = [e for e in events if e["model"] == "sentiment"]
    assert sentiment, f"no drift event:\n{worker.log_tail()}"
    ev = sentiment[0]
    assert ev["version"] == 1 and ev["psi"] > 0.2 and ev["window"] == 20 and ev["kind"] in ("class_mix", "confidence")
    # rate-limited: at most one event per kind per window of 20 messages (40 messages -> at most 2 each)
    for kind in ("class_mix", "confidence"):
        assert len([e for e in sentiment if e["kind"] == kind]) <= 2
    psi = worker.metrics()['tonewatch_drift_psi{kind="class_mix",model="sentiment"}']
    assert psi > 0.2
