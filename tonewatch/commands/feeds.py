"""Messages through the pipeline: ``replay`` a feed, ``bench``, rebuild the sample ``feed``, the ``demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings


def replay(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    speed: Annotated[float | None, typer.Option(help="Pace by event time, N times faster than real time.")] = None,
) -> None:
    """Produce a JSONL feed (id, source, ts, text, ...) onto the news/chat topics, keeping event time."""
    from tonewatch.replay import replay as do_replay

    report = do_replay(ctx_settings(ctx), file, speed)
    typer.echo(f"sent {report.sent} messages: " + ", ".join(f"{t}={n}" for t, n in report.per_topic.items()))


def bench(
    ctx: typer.Context,
    messages: Annotated[int, typer.Option(help="Messages to push through.")] = 2000,
    local: Annotated[bool, typer.Option(help="Start (and stop) a local stack for the run.")] = True,
) -> None:
    """Print one JSON line: end-to-end msgs/s, p50/p99 produce->scored latency, per-stage rates."""
    import time

    from tonewatch.bench import run_bench
    from tonewatch.stack import down, up

    settings = ctx_settings(ctx)
    if not local:  # the running worker's topics: a fresh prefix would be a topic set no worker reads
        typer.echo(json.dumps(run_bench(settings, messages)))
        return
    settings = settings.updated(kafka__topic_prefix=f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    state = up(settings)
    stacked = settings.with_endpoints(state.endpoints)
    try:
        result = run_bench(stacked, messages)
    finally:
        down(stacked)
    typer.echo(json.dumps(result))


def build_feed(out: Annotated[Path, typer.Option()] = Path("data/sample_feed.jsonl")) -> None:
    """Rebuild the bundled sample feed (calm market, one $TSLA surge) from the committed data."""
    from tonewatch.feed import MALFORMED, build_feed, write_feed

    typer.echo(f"wrote {write_feed(out, build_feed(), MALFORMED)} lines to {out}")


def demo(
    ctx: typer.Context,
    feed: Annotated[Path, typer.Option()] = Path("data/sample_feed.jsonl"),
    speed: Annotated[float, typer.Option(help="Event-time pace of the replay.")] = 60.0,
) -> None:
    """The main job on the local stack: up, replay the sample feed, show alerts, summarise, down."""
    from tonewatch.demo import run_demo

    sys.exit(run_demo(ctx_settings(ctx), feed, speed))


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """Add the feed commands to the root app, in the order ``tonewatch --help`` lists them."""
    app.command("replay")(replay)
    app.command("bench")(bench)
    app.command("feed")(build_feed)
    app.command("demo")(demo)
