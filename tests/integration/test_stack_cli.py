"""``tonewatch up / status / down`` as a person runs them: real processes, a state file, a clean stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO
from tonewatch.stack.procs import alive

pytestmark = pytest.mark.integration


def _cli(run_dir: Path, *args: str, timeout: int = 400) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TONEWATCH_RUN_DIR": str(run_dir)}
    for key in [k for k in env if k.startswith("TONEWATCH_") and k != "TONEWATCH_RUN_DIR"]:
        env.pop(key)
    return subprocess.run([sys.executable, "-m", "tonewatch", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _prom(url: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as resp:
        return json.loads(resp.read())["data"]


def _up(url: str) -> dict[str, str]:
    return {r["metric"]["job"]: r["value"][1] for r in _prom(url, "query", query="up")["result"]}


def _until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {timeout_s:.0f}s"
        time.sleep(1.0)


def _signs_in(url: str, user: str, password: str) -> None:
    """The one-time password 'up' printed opens the console (the sign-in form's CSRF token sent back)."""
    import http.cookiejar
    import re

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{url}/login", timeout=10) as resp:
        token = re.search(r'name="csrf" value="([^"]+)"', resp.read().decode())
    form = {"username": user, "password": password, **({"csrf": token[1]} if token else {})}
    with opener.open(f"{url}/login", data=urllib.parse.urlencode(form).encode(), timeout=10) as resp:
        page = resp.read().decode()
    assert resp.status == 200 and "Sign out" in page, page[:500]


def test_up_status_down(stack_settings: object, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    up = _cli(run_dir, "up")
    assert up.returncode == 0, up.stderr[-3000:]
    state = json.loads((run_dir / "stack.json").read_text())
    # in start order, which 'down' reverses: Prometheus first, Kafka last
    assert list(state["pids"]) == ["kafka", "triton", "postgres", "alertmanager", "worker", "notifier", "sink",
                                   "console", "prometheus"]
    assert "console_password" not in state  # told once on stdout, never stored
    password = up.stdout.split("password ", 1)[1].split(",", 1)[0]
    assert state["endpoints"]["kafka_bootstrap"].startswith("127.0.0.1:")
    try:
        again = _cli(run_dir, "up")
        assert again.returncode != 0 and "already running" in again.stderr
        status = json.loads(_cli(run_dir, "status").stdout)
        assert status["running"] and all(c["alive"] for c in status["components"].values())
        assert set(status["metrics"]) == {"triton", "alertmanager", "worker", "notifier", "sink", "prometheus"}
        assert "***@127.0.0.1:" in status["endpoints"]["store_dsn"]  # the password stays in stack.json (0600)
        for url in status["metrics"].values():
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200 and b"# TYPE" in resp.read()
        with urllib.request.urlopen(status["metrics"]["notifier"], timeout=10) as resp:
            assert b"tonewatch_deliveries_total" in resp.read()
        urls = status["urls"]
        assert set(urls) == {"prometheus", "alertmanager", "console"}
        for name in ("prometheus", "alertmanager"):
            with urllib.request.urlopen(f"{urls[name]}/-/ready", timeout=10) as resp:
                assert resp.status == 200
        _signs_in(urls["console"], "analyst", password)
        # Prometheus scrapes every local component and sends its alerts to the local Alertmanager
        am_host = urls["alertmanager"].split("://")[1]
        _until(lambda: _prom(urls["prometheus"], "alertmanagers")["activeAlertmanagers"] != [], "an alertmanager")
        assert [a["url"] for a in _prom(urls["prometheus"], "alertmanagers")["activeAlertmanagers"]] == \
            [f"http://{am_host}/api/v2/alerts"]
        jobs = ("triton", "alertmanager", "worker", "notifier", "sink", "prometheus")
        _until(lambda: _up(urls["prometheus"]) == {j: "1" for j in jobs}, "every target up")
        # every other command finds the stack through the state file
        tail = _cli(run_dir, "alerts", "tail", "--json", timeout=60)
        assert tail.returncode == 0 and tail.stdout == ""
        trends = _cli(run_dir, "trends", "TSLA", "--json", timeout=60)  # the sink migrated the store at its start
        assert trends.returncode == 0 and json.loads(trends.stdout or "[]") == [], trends.stderr[-2000:]
    finally:
        down = _cli(run_dir, "down")
    assert down.returncode == 0, down.stderr[-2000:]
    assert not (run_dir / "stack.json").exists()
    assert not any(alive(pid) for pid in state["pids"].values())
    for url in status["urls"].values():  # nothing answers where Prometheus and Alertmanager were
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/-/ready", timeout=5)
