"""``tonewatch report`` on the real stack: the sample surge, replayed, shows up in the page."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Worker, wait_for
from tonewatch.core.kafka_io import read_json
from tonewatch.feed import SURGE_START_MIN, SURGE_TICKER
from tonewatch.replay import replay
from tonewatch.stack import worker_env

pytestmark = pytest.mark.integration

FIRST_MINUTE = SURGE_START_MIN - 10  # enough calm windows before the surge for a baseline


def _slice(out: Path) -> int:
    """The sample feed from ``FIRST_MINUTE`` on, malformed lines kept (they feed the dead-letter figures)."""
    kept = []
    for line in (REPO / "data" / "sample_feed.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            minute = int(json.loads(line)["ts"][14:16])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            minute = FIRST_MINUTE
        if minute >= FIRST_MINUTE:
            kept.append(line)
    out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return len(kept)


@pytest.mark.timeout(900)
def test_report_shows_the_tsla_alert_with_its_plots(pipeline: Callable[..., Worker], tmp_path: Path) -> None:
    # on 2 shared cores a CPU Triton can take longer than 30 s for a batch: a short deadline only retries it
    worker = pipeline(triton__timeout_s=120)
    s = worker.settings
    feed = tmp_path / "slice.jsonl"
    lines = _slice(feed)
    assert replay(s, feed, speed=60).sent == lines

    def tsla_firing() -> list[dict]:
        return [a for a in read_json(s.kafka, s.kafka.topic("alerts"))
                if a["key"] == SURGE_TICKER and a["dimension"] == "ticker" and a["status"] == "firing"]

    deadline = time.monotonic() + 720
    while not tsla_firing():
        assert worker.alive() and time.monotonic() < deadline, worker.log_tail()
        time.sleep(2.0)
    alert = tsla_firing()[0]
    # the surge's own window is closed (and so plotted) once the watermark passes it by the lateness
    surge_start = alert["window"]["start"]
    while not any(t["key"] == SURGE_TICKER and t["alerting"] for t in read_json(s.kafka, s.kafka.topic("trends"))):
        assert worker.alive() and time.monotonic() < deadline, f"no closed surge window after {surge_start}"
        time.sleep(2.0)
    wait_for(s, "dead-letter", 3, worker)

    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "tonewatch", "report", "--out", str(out), "--keys", "3"],
        env=worker_env(s), capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page_path = out / "index.html"
    assert str(page_path.resolve()) in done.stdout
    page = page_path.read_text(encoding="utf-8")

    assert f"ticker <b>{SURGE_TICKER}</b>" in page and 'class=firing>firing' in page
    assert f'alt="ticker {SURGE_TICKER} negative share"' in page
    for m in alert["top_messages"]:
        assert html.escape(m["text"]) in page
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    firing = set(re.findall(r"class=firing>firing</td><td><span[^>]*>\w+</span></td><td>(\w+) <b>([^<]+)</b>", page))
    assert ("ticker", SURGE_TICKER) in firing
    assert all(f'alt="{dim} {key} negative share"' in page for dim, key in firing)
    assert len(pngs) == max(3, len(firing)) + 2  # every alerting key, then busiest tickers up to 3; volume; versions
    assert all(base64.b64decode(p).startswith(b"\x89PNG") and len(p) > 10_000 for p in pngs)
    assert "sentiment v1 · topic v1" in page and "validate 3" in page
    assert worker.alive()
