"""``tonewatch up / status / down`` as a person runs them: real processes, a state file, a clean stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_up_status_down(stack_settings: object, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    up = _cli(run_dir, "up")
    assert up.returncode == 0, up.stderr[-3000:]
    state = json.loads((run_dir / "stack.json").read_text())
    assert set(state["pids"]) == {"kafka", "triton", "worker"}
    assert state["endpoints"]["kafka_bootstrap"].startswith("127.0.0.1:")
    try:
        again = _cli(run_dir, "up")
        assert again.returncode != 0 and "already running" in again.stderr
        status = json.loads(_cli(run_dir, "status").stdout)
        assert status["running"] and all(c["alive"] for c in status["components"].values())
        import urllib.request

        for url in status["metrics"].values():  # worker and Triton both expose Prometheus metrics
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200 and b"# TYPE" in resp.read()
        # every other command finds the stack through the state file
        tail = _cli(run_dir, "alerts", "tail", "--json", timeout=60)
        assert tail.returncode == 0 and tail.stdout == ""
    finally:
        down = _cli(run_dir, "down")
    assert down.returncode == 0, down.stderr[-2000:]
    assert not (run_dir / "stack.json").exists()
    assert not any(alive(pid) for pid in state["pids"].values())
