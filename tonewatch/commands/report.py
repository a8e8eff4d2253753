"""The static HTML report (issue #7): ``tonewatch report --out DIR``."""

from __future__ import annotations

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
    ) -> None:
        """Write a static HTML report of the configured topics: trends with alerts, volume, model versions."""
        from tonewatch.report.read import report_from_topics

        settings = ctx_settings(ctx)
        path = report_from_topics(settings, out, keys)
        typer.echo(f"report for topics {settings.kafka.topic_prefix}.* written to {path.resolve()}")
