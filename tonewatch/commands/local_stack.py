"""The local stack and its worker: ``up``, ``down``, ``status``, ``setup``, ``worker``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings


def up(
    ctx: typer.Context,
    worker: Annotated[bool, typer.Option(help="Also start a worker and the alert notifier.")] = True,
    monitoring: Annotated[bool, typer.Option(help="Also start Prometheus and Alertmanager when installed.")] = True,
) -> None:
    """Start the local stack: Kafka, Triton with the models, PostgreSQL, a worker, the notifier, the sink, the
    analyst console, Prometheus, Alertmanager."""
    from tonewatch import stack

    state = stack.up(ctx_settings(ctx), start_worker=worker, monitoring=None if monitoring else False)
    typer.echo(json.dumps(stack.status(ctx_settings(ctx))["endpoints"] | state.urls, indent=2))
    if state.console_password:
        typer.echo(f"console: {state.urls['console']} (user analyst, password {state.console_password}, "
                   "new at each 'tonewatch up')")


def down(ctx: typer.Context) -> None:
    """Stop the local stack started by ``tonewatch up``."""
    from tonewatch import stack

    stack.down(ctx_settings(ctx))
    typer.echo("stack stopped")


def status(ctx: typer.Context) -> None:
    """Show each local component: pid, endpoint, readiness."""
    from tonewatch import stack

    typer.echo(json.dumps(stack.status(ctx_settings(ctx)), indent=2, default=str))


def setup(ctx: typer.Context) -> None:
    """Fetch the Kafka broker jars and train models v1 if missing (idempotent)."""
    from models.bootstrap import ensure_models
    from tonewatch.stack.kafka import ensure_kafka_jars

    settings = ctx_settings(ctx)
    typer.echo(f"kafka jars: {ensure_kafka_jars(settings)}")
    built = ensure_models(settings)
    typer.echo(f"models built: {', '.join(built) if built else 'none needed'}")


def worker(ctx: typer.Context) -> None:
    """Run the Faust worker against the configured Kafka and Triton (any, not only local)."""
    from prometheus_client import start_http_server

    from models.artifact import drift_reference, prevalence_rates
    from streams.app import Shutdown, Worker, create_app, tune_gc
    from streams.metrics import create_metrics
    from tonewatch.core.errors import ServiceError
    from tonewatch.core.kafka_io import ensure_topics
    from tonewatch.core.topics import NAMES

    settings = ctx_settings(ctx)
    (settings.run_dir / "faust").mkdir(parents=True, exist_ok=True)
    # every topic exists before the first send: a send to a missing topic stalls the producer
    ensure_topics(settings.kafka, [settings.kafka.topic(n) for n in NAMES])
    metrics = create_metrics()
    if settings.scoring.metrics_port:
        start_http_server(settings.scoring.metrics_port, settings.metrics_host, registry=metrics.registry)
    shutdown = Shutdown()
    faust_app = create_app(settings, metrics, load_reference=drift_reference, on_fatal=shutdown,
                           load_rates=prevalence_rates)
    tune_gc()
    try:
        Worker(faust_app, shutdown, loglevel="INFO").execute_from_commandline()
    except SystemExit:
        reason = shutdown.reason
        if reason is None:
            raise
        # the worker has stopped cleanly; the CLI prints this as its last line and exits 1
        raise ServiceError(f"the worker stopped: {reason}") from None


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """Add the stack commands to the root app, in the order ``tonewatch --help`` lists them."""
    for command in (up, down, status, setup, worker):
        app.command(command.__name__)(command)
