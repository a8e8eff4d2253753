"""Processes a test started and never stopped, found by their command line: every server and worker the
integration tests start names a folder under the session's temporary directory there."""

from __future__ import annotations

import os
from pathlib import Path


def processes_naming(folder: Path) -> list[tuple[int, str]]:
    """Live processes (not this one) whose command line names ``folder``; a zombie's is empty."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        if str(folder) in cmdline:
            found.append((int(entry.name), cmdline))
    return found
