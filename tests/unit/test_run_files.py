"""Run files (the state file, logs, the broker's data) hold endpoints and raw chat: the owner's alone."""

from __future__ import annotations

import stat
import time
from pathlib import Path

from tonewatch.stack.procs import spawn
from tonewatch.stack.state import StackState, write_state


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_file_and_its_folder_are_private(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    path = write_state(run_dir, StackState(endpoints={}, pids={}, logs={}))
    assert (_mode(run_dir), _mode(path)) == (0o700, 0o600)


def test_a_spawned_process_log_and_what_it_writes_are_private(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"
    spawn(["sh", "-c", "echo started; mkdir made; echo data > made/file"], log, cwd=tmp_path)
    deadline = time.monotonic() + 10
    while not (tmp_path / "made" / "file").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (_mode(log.parent), _mode(log)) == (0o700, 0o600)
    assert (_mode(tmp_path / "made"), _mode(tmp_path / "made" / "file")) == (0o700, 0o600)
