"""Messages through the pipeline: ``replay`` a feed, ``bench``, rebuild the sample ``feed``, the ``demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings, fail


def replay(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, metavar="FILE", show_default=False)],
    speed: Annotated[float | None, typer.Option(
        metavar="N", show_default="as fast as possible",
        help="Pace by event time, N times faster than real time (60 = an hour of feed in a minute).")] = None,
    as_fast_as_possible: Annotated[bool, typer.Option(
        "--as-fast-as-possible", help="Send without pacing (the default); the opposite of --speed.")] = False,
    wait: Annotated[bool, typer.Option(
        help="Then wait until the worker has caught up and print what it scored and dead-lettered.")] = True,
    wait_timeout: Annotated[int, typer.Option(
        metavar="SECONDS", min=0, help="Give up waiting after this long, and exit 1.")] = 300,
) -> None:
    """Produce a JSONL feed (id, source, ts, text, ...) onto the news/chat topics, keeping event time.

    Shows a progress bar on a terminal. With --wait (the default) the last line reads e.g.
    "sent 1126 messages (news=701, chat=425), scored 1123, dead-lettered 3 (validate=3)".
    """
    from tonewatch import replay as rp

    if as_fast_as_possible and speed is not None:
        raise typer.BadParameter("give --speed N or --as-fast-as-possible, not both", param_hint="'--speed'")
    if speed is not None and speed <= 0:
        raise typer.BadParameter("must be above 0 (leave it out to send as fast as possible)", param_hint="'--speed'")
    settings = ctx_settings(ctx)
    marks = rp.output_marks(settings) if wait else {}
    tty, total = sys.stderr.isatty(), rp.count_messages(file)
    label = "sending" if speed is None else f"sending at {speed:g}x"
    with typer.progressbar(length=total, label=label, file=sys.stderr, hidden=not tty,
                           show_pos=True, update_min_steps=max(1, total // 500)) as bar:
        report = rp.replay(settings, file, speed, progress=bar.update)
    prefix = settings.kafka.topic_prefix
    if not wait:
        typer.echo(rp.format_sent(report, prefix))
        return
    if tty:
        typer.echo(f"waiting for the worker to catch up (at most {wait_timeout}s) ...", err=True)
    lag = rp.wait_for_pipeline(settings, wait_timeout)
    summary = rp.format_summary(report, prefix, rp.outputs_since(settings, marks))
    if any(lag.values()):
        raise fail(TimeoutError(rp.format_timeout(wait_timeout, lag, summary)), 1)
    typer.echo(summary)


def bench(
    ctx: typer.Context,
    messages: Annotated[int, typer.Option(help="Messages to push through.")] = 2000,
    local: Annotated[bool, typer.Option(help="Start (and stop) a local stack for the run.")] = True,
    open_loop: Annotated[bool, typer.Option(
        help="Open-loop latency curve on the trivial models at 10-90% of the pipeline-only drain rate.")] = True,
    step_seconds: Annotated[float, typer.Option(min=1, metavar="SECONDS", help="Load per open-loop step.")] = 12.0,
    plot: Annotated[Path | None, typer.Option(
        dir_okay=False, metavar="PNG", show_default="open-loop.png in the run dir's bench/",
        help="Where to write the latency-against-load plot.")] = None,
    surge: Annotated[bool, typer.Option(
        help="Surge-to-alert time: a negative surge in a steady feed, to the alert and its webhook.")] = True,
) -> None:
    """Print one JSON line: end-to-end msgs/s, p50/p99 produce->scored latency, per-stage rates, and (unless
    --no-open-loop / --no-surge) the open-loop latency curve and the surge-to-alert time (docs/performance.md)."""
    import time

    from tonewatch.bench import run_bench
    from tonewatch.perf.latency_runs import LatencyOptions
    from tonewatch.stack import down, up

    settings = ctx_settings(ctx)
    latency = LatencyOptions(open_loop=open_loop, step_s=step_seconds, plot_path=plot, surge=surge) \
        if open_loop or surge else None
    if not local:  # the running worker's topics: a fresh prefix would be a topic set no worker reads
        typer.echo(json.dumps(run_bench(settings, messages, latency=latency)))
        return
    settings = settings.updated(kafka__topic_prefix=f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    state = up(settings)
    stacked = settings.with_endpoints(state.endpoints)
    try:
        result = run_bench(stacked, messages, latency=latency)
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
