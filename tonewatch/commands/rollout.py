"""Model publishing: ``models push``, ``rollout``, ``promote``, ``rollback``, ``status`` (issue #6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings, fail
from tonewatch.core.errors import TonewatchError


def push(ctx: typer.Context, name: str, path: Annotated[Path, typer.Argument(exists=True)]) -> None:
    """Validate a version (layout, label map, offline smoke inference) and add it as the next version."""
    from models.artifact import ArtifactError
    from models.publish import push_version

    try:
        version = push_version(ctx_settings(ctx), name, path)
    except ArtifactError as exc:
        raise fail(exc) from exc
    typer.echo(f"{name} v{version} pushed; roll it out with: tonewatch models rollout {name} {version}")


def rollout_cmd(
    ctx: typer.Context, name: str, version: int,
    canary: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Share of message ids.")] = None,
    shadow: Annotated[bool, typer.Option(help="Score with both; publish production's result.")] = False,
    duration: Annotated[float | None, typer.Option(help="Seconds of live traffic to judge on.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Load beside production, smoke-test through Triton, canary or shadow, then promote or roll back."""
    from models.rollout.driver import rollout

    if shadow and canary is not None:
        raise fail(ValueError("choose --canary or --shadow, not both"))
    try:
        out = rollout(ctx_settings(ctx), name, version, mode="shadow" if shadow else "canary", share=canary,
                      duration_s=duration, echo=typer.echo)
    except TonewatchError as exc:
        raise fail(exc) from exc
    typer.echo(json.dumps(out.__dict__) if as_json else
               f"{name} v{version}: {out.action} ({'; '.join(out.reasons)}); golden {out.golden}")
    if out.action != "promoted":
        raise typer.Exit(1)


def promote_cmd(ctx: typer.Context, name: str, version: Annotated[int | None, typer.Argument()] = None) -> None:
    """Make the candidate (or VERSION) production now, then unload the old production version."""
    from models.rollout.driver import promote

    try:
        v = promote(ctx_settings(ctx), name, version)
    except TonewatchError as exc:
        raise fail(exc) from exc
    typer.echo(f"{name} v{v} is production")


def rollback_cmd(
    ctx: typer.Context, name: str,
    to: Annotated[int | None, typer.Option("--to", help="Version to serve instead of production.")] = None,
) -> None:
    """Drop the candidate; with no candidate, serve the previous production version (or --to N)."""
    from models.rollout.driver import rollback

    try:
        v = rollback(ctx_settings(ctx), name, to)
    except TonewatchError as exc:
        raise fail(exc) from exc
    typer.echo(f"{name} v{v} is production")


def sync_cmd(ctx: typer.Context, name: str) -> None:
    """Load exactly the versions the model events name (run after Triton restarts)."""
    from models.rollout.driver import sync

    try:
        versions = sync(ctx_settings(ctx), name)
    except TonewatchError as exc:
        raise fail(exc) from exc
    typer.echo(f"{name}: loaded {versions}")


def status_cmd(
    ctx: typer.Context, name: Annotated[str | None, typer.Argument()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Versions on disk, loaded in Triton, production, candidate and canary share."""
    from models.rollout.driver import status

    settings = ctx_settings(ctx)
    names = [name] if name else [settings.triton.sentiment_model, settings.triton.topic_model]
    rows = [status(settings, n) for n in names]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['model']}: production v{r['production']}, candidate "
                   f"{'v' + str(r['candidate']) if r['candidate'] else '-'} ({r['mode']}, share {r['share']}); "
                   f"on disk {r['on_disk']}; loaded {r['loaded']}")


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """Add the publishing commands to the ``models`` group."""
    models_app.command("push")(push)
    models_app.command("rollout")(rollout_cmd)
    models_app.command("promote")(promote_cmd)
    models_app.command("rollback")(rollback_cmd)
    models_app.command("sync")(sync_cmd)
    models_app.command("status")(status_cmd)
