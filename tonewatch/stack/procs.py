"""Child-process plumbing for the local stack: ports, detached spawn, readiness, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tonewatch.core.errors import ServiceError


class StackError(ServiceError):
    """A component failed to start; the message carries its log tail."""


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process.

    The kernel may offer the same free port twice; a caller that picks a port but binds it only later (a
    receiver started after a test) would then share it with the next caller's server (seen in CI: a
    webhook "down" on purpose answered with another process's metrics server).
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


PRIVATE_UMASK = 0o077  # run files hold raw chat, topic data and endpoints: the owner's alone


def private_dir(path: Path) -> Path:
    """A run-data folder only its owner can read (0700), created if missing."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """A run file only its owner can read (0600), replaced whole."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a process in its own session (survives the CLI that started it); output to a log file. The log and
    everything the process creates is its owner's alone (0600/0700)."""
    private_dir(log_path.parent)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True, umask=PRIVATE_UMASK,
        )
    return proc.pid


def alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our dead child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(name: str, pid: int, log_path: Path, check: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``check`` until it holds; fail early, with the log, if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            raise StackError(f"{name} exited during start-up; log {log_path}:\n{log_tail(log_path)}")
        try:
            if check():
                return
        except Exception:  # not up yet: connection refused, metadata not ready...
            pass
        time.sleep(0.5)
    stop(pid)
    raise StackError(f"{name} not ready after {timeout_s:.0f}s; log {log_path}:\n{log_tail(log_path)}")


def stop(pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL after ``timeout_s``."""
    if not alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
