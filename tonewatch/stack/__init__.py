"""``tonewatch up/down/status``: Kafka, Triton, PostgreSQL, a worker, the notifier, the sink, Prometheus and
Alertmanager as local child processes."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.triton_admin import load_model
from tonewatch.core.settings import Settings
from tonewatch.notify.egress import LOOPBACK
from tonewatch.stack.alertmanager import BINARIES as AM_BINARIES
from tonewatch.stack.alertmanager import start_alertmanager
from tonewatch.stack.kafka import start_kafka
from tonewatch.stack.postgres import start_postgres
from tonewatch.stack.procs import StackError, alive, free_port, spawn, stop, wait_ready
from tonewatch.stack.prometheus import start_prometheus
from tonewatch.stack.state import StackState, clear_state, read_state, write_state
from tonewatch.stack.triton import start_triton

__all__ = ["StackError", "down", "status", "up"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15; not on PATH
PROMETHEUS_INTERVAL_S = 5.0  # scrape and rule evaluation: light on a laptop, fine-grained enough to watch a demo


def worker_env(settings: Settings) -> dict[str, str]:
    """The whole settings object as the ``TONEWATCH_*`` variables production uses, for a child worker."""
    return {**os.environ, **settings.environment()}


@dataclass(frozen=True)
class Component:
    """One started process: how ``down`` stops it, where ``status`` points people."""

    name: str
    pid: int
    log: Path
    metrics: str | None = None  # host:port serving /metrics, a Prometheus target
    url: str | None = None  # web UI / API base


def monitoring_available() -> bool:
    """Both Debian binaries (``make system``) on PATH: the stack runs without them, only unmonitored."""
    return shutil.which("prometheus") is not None and any(shutil.which(b) for b in AM_BINARIES)


def store_available() -> bool:
    """Debian's postgresql-15 (``make system``): without it the stack runs with no history store."""
    return (PG_BIN / "postgres").is_file()


def _store(settings: Settings, run_dir: Path, started: list[Component]) -> dict[str, Any]:
    """PostgreSQL when the stack keeps history and no store is given: the settings that point the sink at it."""
    if settings.store.dsn is not None:
        return {"store__metrics_port": free_port()}
    if not (settings.stack.store and store_available()):
        return {}
    pg = start_postgres(run_dir / "postgres")
    started.append(Component("postgres", pg.pid, pg.log_path))
    return {"store__dsn": pg.dsn, "store__metrics_port": free_port()}


def _console(local: Settings, run_dir: Path, started: list[Component]) -> str | None:
    """The analyst console on the store, with a new one-time password for the user ``analyst`` (returned)."""
    if local.store.dsn is None or importlib.util.find_spec("fastapi") is None:  # the console extra is optional
        return None
    from tonewatch.console.auth import add_user

    password = secrets.token_urlsafe(12)
    add_user(local.console.users_file, "analyst", "analyst", password)
    log_path = run_dir / "logs" / "console.log"
    pid = spawn([sys.executable, "-m", "tonewatch", "console"], log_path, env=worker_env(local))
    url = f"http://{local.console.host}:{local.console.port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/healthz", timeout=3) as resp:
            return bool(resp.status == 200)

    wait_ready("console", pid, log_path, ready, timeout_s=60)
    started.append(Component("console", pid, log_path, url=url))
    return password


def _service(name: str, local: Settings, port: int, run_dir: Path) -> Component:
    """A ``tonewatch <name>`` child on the local settings, ready once its /metrics answers."""
    log_path = run_dir / "logs" / f"{name}.log"
    pid = spawn([sys.executable, "-m", "tonewatch", name], log_path, env=worker_env(local))
    target = f"{local.metrics_host}:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"http://{target}/metrics", timeout=3) as resp:
            return bool(resp.status == 200)

    wait_ready(name, pid, log_path, ready, timeout_s=120)
    return Component(name, pid, log_path, metrics=target)


def up(settings: Settings, *, start_worker: bool = True, models: tuple[str, ...] | None = None,
       monitoring: bool | None = None) -> StackState:
    """Kafka, Triton (models loaded), PostgreSQL, Alertmanager, worker, notifier, sink, Prometheus: in that order.

    ``monitoring`` None follows ``settings.stack.monitoring`` and skips Prometheus and Alertmanager when
    their binaries are missing; True demands them. Whatever started is stopped again if a later step fails.
    """
    from models.bootstrap import ensure_models

    run_dir = settings.run_dir.resolve()
    current = read_state(run_dir)
    if current is not None and any(alive(p) for p in current.pids.values()):
        raise StackError(f"a local stack is already running (pids {current.pids}); run 'tonewatch down' first")
    if monitoring is None:
        monitoring = settings.stack.monitoring and monitoring_available()
    models = models or (settings.triton.sentiment_model, settings.triton.topic_model)
    started: list[Component] = []
    password = None
    try:
        kafka = start_kafka(settings, run_dir / "kafka-data")
        started.append(Component("kafka", kafka.pid, kafka.log_path))
        triton = start_triton(settings, run_dir / "triton")
        started.append(Component("triton", triton.pid, triton.log_path, metrics=triton.metrics_url))
        store = _store(settings, run_dir, started)
        local = settings.updated(
            run_dir=run_dir, kafka__bootstrap=kafka.bootstrap, triton__grpc_url=triton.grpc_url,
            triton__http_url=triton.http_url, triton__metrics_url=triton.metrics_url,
            triton__model_env_path=settings.triton.model_env_path or Path(sys.prefix),
            # two CPU models share the cores: one torch pool each avoids oversubscription
            triton__cpu_threads=settings.triton.cpu_threads or max(1, (os.cpu_count() or 2) // 2),
            scoring__metrics_port=free_port(), delivery__metrics_port=free_port(),
            # the local stack's receivers (the demo's webhook sink, its Alertmanager) listen on loopback
            delivery__allowed_networks=",".join(filter(None, (settings.delivery.allowed_networks, LOOPBACK))),
            console__port=free_port(), console__users_file=run_dir / "console-users.json", **store,
        )
        ensure_models(local)
        for name in models:
            load_model(local, name)
        if monitoring:
            am = start_alertmanager(run_dir / "alertmanager")
            started.append(Component("alertmanager", am.pid, am.log_path, metrics=_hostport(am.url), url=am.url))
        if start_worker:
            started.append(_service("worker", local, local.scoring.metrics_port, run_dir))
            started.append(_service("notifier", local, local.delivery.metrics_port, run_dir))
            if local.store.dsn is not None:
                started.append(_service("sink", local, local.store.metrics_port, run_dir))
            password = _console(local, run_dir, started)
        if monitoring:
            targets = {c.name: [c.metrics] for c in started if c.metrics}
            prom = start_prometheus(run_dir / "prometheus", targets, interval_s=PROMETHEUS_INTERVAL_S,
                                    alertmanagers=targets["alertmanager"], scrape_self=True)
            started.append(Component("prometheus", prom.pid, prom.log_path, metrics=_hostport(prom.url), url=prom.url))
        return _record(local, started).model_copy(update={"console_password": password})
    except BaseException:
        for component in reversed(started):
            stop(component.pid, timeout_s=30)
        raise


def _record(local: Settings, started: list[Component]) -> StackState:
    """The state file every later command reads, and ``down`` stops in reverse."""
    state = StackState(
        endpoints=local.endpoints(),
        pids={c.name: c.pid for c in started},
        logs={c.name: str(c.log) for c in started},
        metrics={c.name: f"http://{c.metrics}/metrics" for c in started if c.metrics},
        urls={c.name: c.url for c in started if c.url},
    )
    write_state(local.run_dir, state)
    return state


def _masked(url: str) -> str:
    """An endpoint with its password hidden: status output ends up in terminals and tickets."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _hostport(url: str) -> str:
    return url.split("://", 1)[-1]


def down(settings: Settings) -> None:
    """Stop in the reverse of start order: Prometheus, the sink, the notifier and worker (finishing their
    batches), Alertmanager, PostgreSQL, Triton, Kafka."""
    run_dir = settings.run_dir.resolve()
    state = read_state(run_dir)
    if state is None:
        return
    for pid in reversed(list(state.pids.values())):
        stop(pid, timeout_s=30)
    clear_state(run_dir)


def status(settings: Settings) -> dict[str, Any]:
    state = read_state(settings.run_dir.resolve())
    if state is None:
        return {"running": False}
    return {
        "running": True,
        "components": {n: {"pid": p, "alive": alive(p), "log": state.logs.get(n), "url": state.urls.get(n)}
                       for n, p in state.pids.items()},
        "endpoints": {name: _masked(value) for name, value in state.endpoints.items()},
        "metrics": state.metrics,
        "urls": state.urls,
    }
