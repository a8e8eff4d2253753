"""The one CLI, ``tonewatch``. Settings are built here, once per invocation, and passed down."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from tonewatch.settings import Settings

app = typer.Typer(help="Tonewatch: streaming financial-sentiment risk monitor.", no_args_is_help=True)
alerts_app = typer.Typer(help="Read alerts.", no_args_is_help=True)
models_app = typer.Typer(help="Build and inspect the Triton models.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(models_app, name="models")


def _settings(ctx: typer.Context) -> Settings:
    if ctx.obj is None:
        ctx.obj = Settings()
    settings: Settings = ctx.obj
    return settings


@app.callback()
def _root(ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        logging.getLogger("kafka").setLevel(logging.WARNING)


@app.command()
def up(ctx: typer.Context, worker: Annotated[bool, typer.Option(help="Also start a worker.")] = True) -> None:
    """Start the local stack: Kafka (KRaft), Triton with the models, and a worker."""
    from tonewatch import stack

    state = stack.up(_settings(ctx), start_worker=worker)
    typer.echo(json.dumps(state.endpoints, indent=2))


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop the local stack started by ``tonewatch up``."""
    from tonewatch import stack

    stack.down(_settings(ctx))
    typer.echo("stack stopped")


@app.command()
def status(ctx: typer.Context) -> None:
    """Show each local component: pid, endpoint, readiness."""
    from tonewatch import stack

    typer.echo(json.dumps(stack.status(_settings(ctx)), indent=2, default=str))


@app.command()
def setup(ctx: typer.Context) -> None:
    """Fetch the Kafka broker jars and train models v1 if missing (idempotent)."""
    from models.bootstrap import ensure_models
    from tonewatch.stack.kafka import ensure_kafka_jars

    settings = _settings(ctx)
    typer.echo(f"kafka jars: {ensure_kafka_jars(settings)}")
    built = ensure_models(settings)
    typer.echo(f"models built: {', '.join(built) if built else 'none needed'}")


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run the Faust worker against the configured Kafka and Triton (any, not only local)."""
    import faust
    from prometheus_client import start_http_server

    from streams.app import create_app
    from streams.metrics import create_metrics
    from streams.topics import NAMES
    from tonewatch.kafka_io import ensure_topics

    settings = _settings(ctx)
    (settings.run_dir / "faust").mkdir(parents=True, exist_ok=True)
    # every topic exists before the first send: a send to a missing topic stalls the producer
    ensure_topics(settings, [settings.topic(n) for n in NAMES])
    metrics = create_metrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.metrics_host, registry=metrics.registry)
    faust_app = create_app(settings, metrics)
    faust.Worker(faust_app, loglevel="INFO").execute_from_commandline()


@app.command()
def replay(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    speed: Annotated[float | None, typer.Option(help="Pace by event time, N times faster than real time.")] = None,
) -> None:
    """Produce a JSONL feed (id, source, ts, text, ...) onto the news/chat topics, keeping event time."""
    from tonewatch.replay import replay as do_replay

    report = do_replay(_settings(ctx), file, speed)
    typer.echo(f"sent {report.sent} messages: " + ", ".join(f"{t}={n}" for t, n in report.per_topic.items()))


@alerts_app.command("tail")
def alerts_tail(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new alerts.")] = False,
    ticker: Annotated[str | None, typer.Option(help="Only this ticker.")] = None,
    topic: Annotated[str | None, typer.Option(help="Only this topic label.")] = None,
    min_severity: Annotated[str | None, typer.Option(help="warning or critical.")] = None,
) -> None:
    """Print every alert in the alerts topic, then exit once caught up (or follow)."""
    from tonewatch.alerts_cli import dumps, format_alert, tail

    if min_severity not in (None, "info", "warning", "critical"):
        raise typer.BadParameter("--min-severity must be info, warning or critical")
    try:
        for alert in tail(_settings(ctx), follow=follow, ticker=ticker, topic=topic, min_severity=min_severity):
            typer.echo(dumps(alert) if as_json else format_alert(alert))
    except KeyboardInterrupt:
        pass


@models_app.command("bootstrap")
def models_bootstrap(ctx: typer.Context) -> None:
    """Train version 1 of each model (head on the frozen encoder) if none exists."""
    from models.bootstrap import ensure_models

    built = ensure_models(_settings(ctx))
    typer.echo(f"built: {', '.join(built) if built else 'nothing (version 1 present)'}")


@app.command()
def bench(
    ctx: typer.Context,
    messages: Annotated[int, typer.Option(help="Messages to push through.")] = 2000,
    local: Annotated[bool, typer.Option(help="Start (and stop) a local stack for the run.")] = True,
) -> None:
    """Print one JSON line: end-to-end msgs/s, p50/p99 produce->scored latency, per-stage rates."""
    import time

    from tonewatch.bench import run_bench
    from tonewatch.stack import down, up

    settings = _settings(ctx).model_copy(update={"topic_prefix": f"bench-{time.strftime('%Y%m%d-%H%M%S')}"})
    if not local:
        typer.echo(json.dumps(run_bench(settings, messages)))
        return
    state = up(settings)
    stacked = settings.model_copy(update={k: v for k, v in state.endpoints.items() if k in Settings.model_fields})
    try:
        result = run_bench(stacked, messages)
    finally:
        down(stacked)
    typer.echo(json.dumps(result))


@app.command("feed")
def build_feed(out: Annotated[Path, typer.Option()] = Path("data/sample_feed.jsonl")) -> None:
    """Rebuild the bundled sample feed (calm market, one $TSLA surge) from the committed data."""
    from tonewatch.feed import MALFORMED, build_feed, write_feed

    typer.echo(f"wrote {write_feed(out, build_feed(), MALFORMED)} lines to {out}")


@app.command()
def demo(
    ctx: typer.Context,
    feed: Annotated[Path, typer.Option()] = Path("data/sample_feed.jsonl"),
    speed: Annotated[float, typer.Option(help="Event-time pace of the replay.")] = 60.0,
) -> None:
    """The main job on the local stack: up, replay the sample feed, show alerts, summarise, down."""
    from tonewatch.demo import run_demo

    sys.exit(run_demo(_settings(ctx), feed, speed))


def main() -> None:
    app()
