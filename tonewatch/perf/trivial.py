"""A Triton serving ``benchmarks/trivial_repo``: both model names, next-to-free inference.

Used to measure the pipeline without the encoders, and by the fault tests, which restart
their own Triton and need it to load in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

from models.triton_admin import load_model
from tonewatch.core.settings import Settings
from tonewatch.stack.triton import TritonProcess, start_triton, stop_triton

TRIVIAL_REPO = Path(__file__).resolve().parents[2] / "benchmarks" / "trivial_repo"


def start_trivial_triton(
    settings: Settings, work_dir: Path, *, ports: tuple[int, int, int] | None = None
) -> tuple[TritonProcess, Settings]:
    """Start Triton on the trivial repo (on ``ports`` = http, grpc, metrics when given), load both models.

    Returns the process and ``settings`` pointing at it.
    """
    base = settings.updated(
        triton__model_repository=TRIVIAL_REPO,
        triton__model_env_path=Path(settings.triton.model_env_path or sys.prefix),
    )
    http, grpc, metrics = ports or (None, None, None)
    proc = start_triton(base, work_dir, http_port=http, grpc_port=grpc, metrics_port=metrics)
    local = base.updated(
        triton__grpc_url=proc.grpc_url, triton__http_url=proc.http_url, triton__metrics_url=proc.metrics_url,
    )
    try:
        for name in (local.triton.sentiment_model, local.triton.topic_model):
            load_model(local, name)
    except BaseException:
        stop_triton(proc)
        raise
    return proc, local


def ports_of(proc: TritonProcess) -> tuple[int, int, int]:
    """The (http, grpc, metrics) ports of a running Triton, to restart it on the same ones."""
    return tuple(int(u.rsplit(":", 1)[1]) for u in (proc.http_url, proc.grpc_url, proc.metrics_url))  # type: ignore[return-value]
