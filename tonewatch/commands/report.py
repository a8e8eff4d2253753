"""The static HTML report (issue #7): ``tonewatch report --out DIR``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """Add ``tonewatch report``."""

    @app.command("report")
    def report(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option(help="Folder for index.html (created if missing).")] = Path("reports/latest"),
        keys: Annotated[int, typer.Option(min=1, help="Keys plotted: alerting keys, then the busiest tickers.")] = 6,
        since: Annotated[str, typer.Option(help="From the store: how far back in event time (30m, 12h, 7d).")] = "7d",
        topics: Annotated[bool, typer.Option("--topics", help="Read the topics even when a store is set.")] = False,
    ) -> None:
        """Write a static HTML report: trends with alerts, volume, model versions. From the history store when one
        is set (the local stack sets it), else from the configured topics."""
        settings = ctx_settings(ctx)
        if settings.store.dsn is None or topics:
            from tonewatch.report.read import report_from_topics

            path = report_from_topics(settings, out, keys)
            typer.echo(f"report for topics {settings.kafka.topic_prefix}.* written to {path.resolve()}")
            return
        import psycopg

        from tonewatch.commands.store import parse_duration
        from tonewatch.report.render import write_report
        from tonewatch.report.store import read_store

        start = datetime.now(UTC) - parse_duration(since)
        with psycopg.connect(settings.store.dsn.get_secret_value()) as conn:
            run = read_store(conn, start)
        path = write_report(run, out, source=f"the history store since {start:%Y-%m-%d %H:%M}Z", keys=keys)
        typer.echo(f"report for the history store since {start:%Y-%m-%d %H:%M}Z written to {path.resolve()}")
