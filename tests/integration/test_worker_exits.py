"""A worker whose score stage cannot start exits non-zero with one line naming the cause (#27, 6).

Before, the stage's task died unread and the process stayed up, reading nothing, for as long as anyone let
it: here Triton is a closed local port (a Triton that never comes up), with a short start-up wait.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import REPO
from tonewatch.core.settings import Settings
from tonewatch.stack import worker_env
from tonewatch.stack.procs import free_port

pytestmark = pytest.mark.integration

WAIT_S = 4.0


def test_a_worker_whose_triton_never_comes_up_exits_with_one_line(stack_settings: Settings, tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = stack_settings.updated(kafka__topic_prefix=f"t{uuid.uuid4().hex[:10]}",
                                      scoring__metrics_port=free_port(), triton__grpc_url=closed,
                                      triton__startup_timeout_s=WAIT_S)
    t0 = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "tonewatch", "worker"], env=worker_env(settings), cwd=REPO,
                                capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the worker was still up after 60 s:\n{exc.stderr!s}"[-3000:])
    took = time.monotonic() - t0
    out = result.stdout + result.stderr
    (tmp_path / "worker.log").write_text(out)  # kept with the test's files, to read after a failure
    assert result.returncode == 1, out[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the worker stopped: score stage could not start: TritonError: Triton at {closed} "
                           f"did not serve {settings.triton.sentiment_model}, {settings.triton.topic_model} within "
                           f"{WAIT_S:g} s (TONEWATCH_TRITON__STARTUP_TIMEOUT_S): "), last
    assert [line for line in out.splitlines() if "did not serve" in line] == [last]  # said once, at the end
    assert "Traceback" not in out, out[-3000:]
    waiting = [line for line in out.splitlines() if f"waiting for Triton at {closed}" in line]
    assert len(waiting) == 1 and "[INFO]" in waiting[0], waiting  # the start of the wait, said once
    assert WAIT_S <= took < 60
