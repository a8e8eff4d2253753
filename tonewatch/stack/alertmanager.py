"""Prometheus Alertmanager (the Debian ``prometheus-alertmanager`` binary) on a free loopback port.

For tests and local runs: a minimal config with one no-op receiver, its own storage path, and
clustering off, so several instances can run side by side on one machine.
"""

from __future__ import annotations

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tonewatch.stack.procs import StackError, free_port, spawn, stop, wait_ready

BINARIES = ("prometheus-alertmanager", "alertmanager")
# group_by incident, as deploy/alertmanager/alertmanager.yml: one notification per Tonewatch incident
CONFIG = """route:
  receiver: "null"
  group_by: [incident]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


@dataclass(frozen=True)
class AlertmanagerProcess:
    pid: int
    url: str
    data_dir: Path
    log_path: Path


def _binary() -> str:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    raise StackError("Alertmanager not found: apt-get install prometheus-alertmanager")


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/-/ready", timeout=3) as resp:
        return bool(resp.status == 200)


def start_alertmanager(data_dir: Path, port: int | None = None, timeout_s: float = 60.0) -> AlertmanagerProcess:
    """Write the config, start the binary, wait for ``/-/ready``."""
    data_dir = data_dir.resolve()
    (data_dir / "storage").mkdir(parents=True, exist_ok=True)
    config = data_dir / "alertmanager.yml"
    config.write_text(CONFIG)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "alertmanager.log"
    cmd = [_binary(), f"--config.file={config}", f"--storage.path={data_dir / 'storage'}",
           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    pid = spawn(cmd, log_path)
    wait_ready("alertmanager", pid, log_path, lambda: _ready(url), timeout_s)
    return AlertmanagerProcess(pid, url, data_dir, log_path)


def stop_alertmanager(proc: AlertmanagerProcess) -> None:
    stop(proc.pid, timeout_s=15)
