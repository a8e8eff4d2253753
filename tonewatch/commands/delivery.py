"""Alert delivery: subscriptions, webhooks, Alertmanager, Grafana annotations, ack (issue #5)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """Add this area's commands (none yet)."""
