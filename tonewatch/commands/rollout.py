"""Model publishing: push, status, promote, rollback, canary (issue #6)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """Add this area's commands (none yet)."""
