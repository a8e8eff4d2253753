"""The local stack's state file: endpoints for every other command, pids for ``down``."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from tonewatch.core.settings import STATE_FILE
from tonewatch.stack.procs import write_private


class StackState(BaseModel):
    endpoints: dict[str, str]  # keys are Settings field names, so settings pick them up
    pids: dict[str, int]
    logs: dict[str, str]
    metrics: dict[str, str] = {}  # component -> Prometheus endpoint
    urls: dict[str, str] = {}  # component -> its web UI / API base URL (Prometheus, Alertmanager, console)
    # the console's one-time analyst password: told to whoever ran 'up', never written to the state file
    console_password: str | None = Field(None, exclude=True)


def write_state(run_dir: Path, state: StackState) -> Path:
    """The state file, readable by its owner only (it names every endpoint and log)."""
    path = run_dir / STATE_FILE
    write_private(path, state.model_dump_json(indent=2))
    return path


def read_state(run_dir: Path) -> StackState | None:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return StackState.model_validate(json.loads(path.read_text()))
    except (ValueError, OSError):
        return None


def clear_state(run_dir: Path) -> None:
    (run_dir / STATE_FILE).unlink(missing_ok=True)
