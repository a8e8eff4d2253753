"""``tonewatch console`` as production runs it, for the browser tests."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.conftest import REPO
from tonewatch.core.settings import Settings
from tonewatch.stack.procs import spawn, stop, wait_ready


@contextmanager
def running_console(stack: Settings, env: dict[str, str]) -> Iterator[str]:
    """Its URL once ``/healthz`` answers; stopped on the way out, before the caller stops PostgreSQL (whose smart
    shutdown waits for the console's connections)."""
    log = stack.run_dir / "logs" / "console.log"
    pid = spawn([sys.executable, "-m", "tonewatch", "console"], log, env=env, cwd=REPO)
    url = f"http://{stack.console.host}:{stack.console.port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/healthz", timeout=3) as resp:
            return bool(resp.status == 200)

    try:
        wait_ready("console", pid, log, ready, timeout_s=60)
        yield url
    finally:
        stop(pid)
