"""CLI command groups by area; ``tonewatch.cli`` calls each module's ``register``.

Each module adds its commands to the root app or to the ``alerts``/``models`` groups, and
imports its heavy dependencies inside the command bodies, so ``tonewatch --help`` stays fast.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import typer

from tonewatch.core.settings import Settings, load_settings


def ctx_settings(ctx: typer.Context) -> Settings:
    """The invocation's one settings object, built on first use and kept on the context."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
    settings: Settings = root.obj
    return settings


def fail(exc: Exception, code: int = 2) -> typer.Exit:
    """Print ``error: <exc>`` on stderr and return the Exit to raise: every refusal reads the same.

    Commands refuse with 2; ``tonewatch.cli.main`` uses 1 for a ``TonewatchError`` no command handled.
    """
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


def serve_until_signal(port: int, host: str, registry: Any) -> Callable[[], bool]:
    """A long-running service's /metrics on ``port`` (0: none) and its stop flag: SIGTERM or SIGINT sets it, so
    the service finishes the batch in hand instead of dying in it."""
    from prometheus_client import start_http_server

    if port:
        start_http_server(port, host, registry=registry)
    stopping: list[int] = []

    def _stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return lambda: bool(stopping)
