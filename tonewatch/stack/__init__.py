"""``tonewatch up/down/status``: Kafka, Triton and a worker as local child processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tonewatch.settings import ENV_PREFIX, Settings
from tonewatch.stack.kafka import start_kafka
from tonewatch.stack.loader import load_model
from tonewatch.stack.procs import StackError, alive, free_port, spawn, stop
from tonewatch.stack.state import StackState, clear_state, read_state, write_state
from tonewatch.stack.triton import start_triton

__all__ = ["StackError", "down", "status", "up"]


def worker_env(settings: Settings) -> dict[str, str]:
    """The whole settings object as the ``TONEWATCH_*`` variables production uses, for a child worker."""
    env = dict(os.environ)
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env


def up(settings: Settings, *, start_worker: bool = True, models: tuple[str, ...] | None = None) -> StackState:
    from models.bootstrap import ensure_models

    run_dir = settings.run_dir.resolve()
    current = read_state(run_dir)
    if current is not None and any(alive(p) for p in current.pids.values()):
        raise StackError(f"a local stack is already running (pids {current.pids}); run 'tonewatch down' first")
    models = models or (settings.sentiment_model, settings.topic_model)
    started: list[Any] = []
    try:
        kafka = start_kafka(settings, run_dir / "kafka-data")
        started.append(kafka)
        triton = start_triton(settings, run_dir / "triton")
        started.append(triton)
        local = settings.model_copy(update={
            "run_dir": run_dir, "kafka_bootstrap": kafka.bootstrap, "triton_grpc_url": triton.grpc_url,
            "triton_http_url": triton.http_url, "triton_metrics_url": triton.metrics_url,
            "model_env_path": settings.model_env_path or Path(sys.prefix),
            # two CPU models share the cores: one torch pool each avoids oversubscription (+37% here)
            "triton_cpu_threads": settings.triton_cpu_threads or max(1, (os.cpu_count() or 2) // 2),
        })
        ensure_models(local)
        for name in models:
            load_model(local, name)
        state = StackState(
            endpoints={k: str(getattr(local, k)) for k in
                       ("kafka_bootstrap", "triton_grpc_url", "triton_http_url", "triton_metrics_url",
                        "model_env_path")},
            pids={"kafka": kafka.pid, "triton": triton.pid},
            logs={"kafka": str(kafka.log_path), "triton": str(triton.log_path)},
            metrics={"triton": f"http://{triton.metrics_url}/metrics"},
        )
        if start_worker:
            log_path = run_dir / "logs" / "worker.log"
            local = local.model_copy(update={"metrics_port": free_port()})
            pid = spawn([sys.executable, "-m", "tonewatch", "worker"], log_path, env=worker_env(local))
            started.append(pid)
            time.sleep(2.0)
            if not alive(pid):
                raise StackError(f"worker exited at start-up; see {log_path}")
            state.pids["worker"] = pid
            state.logs["worker"] = str(log_path)
            state.metrics["worker"] = f"http://{local.metrics_host}:{local.metrics_port}/metrics"
        write_state(run_dir, state)
        return state
    except BaseException:
        for item in reversed(started):
            stop(item if isinstance(item, int) else item.pid)
        raise


def down(settings: Settings) -> None:
    """Stop in reverse order of dependency: worker (finishes its batch), Triton, Kafka."""
    run_dir = settings.run_dir.resolve()
    state = read_state(run_dir)
    if state is None:
        return
    for name in ("worker", "triton", "kafka"):
        pid = state.pids.get(name)
        if pid:
            stop(pid, timeout_s=30)
    clear_state(run_dir)


def status(settings: Settings) -> dict[str, Any]:
    state = read_state(settings.run_dir.resolve())
    if state is None:
        return {"running": False}
    return {
        "running": True,
        "components": {n: {"pid": p, "alive": alive(p), "log": state.logs.get(n)} for n, p in state.pids.items()},
        "endpoints": state.endpoints,
        "metrics": state.metrics,
    }

