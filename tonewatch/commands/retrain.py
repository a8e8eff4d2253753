"""Feedback, the retrain job and drift (issue #6): ``tonewatch feedback ...`` and ``tonewatch retrain``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tonewatch.commands import ctx_settings, fail

if TYPE_CHECKING:
    from models.finetune import FinetuneConfig

feedback_app = typer.Typer(help="Analyst labels that correct the models (the retrain job's input).",
                           no_args_is_help=True)


@feedback_app.command("add")
def feedback_add(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Option("--message-id", help="Id of the scored message.")],
    label: Annotated[str, typer.Option(help="The correct label, e.g. negative.")],
    by: Annotated[str, typer.Option(help="Who labels it.")],
    model: Annotated[str, typer.Option(help="sentiment or topic.")] = "sentiment",
    text: Annotated[str | None, typer.Option(help="The text; default: looked up in the scored topic.")] = None,
    source: Annotated[str | None, typer.Option(
        help="news or chat (chat corrections weigh more in retraining); default: the scored record's source.")]
    = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Store one correction; the latest correction of a message wins."""
    from models.feedback import FeedbackError, feedback_for_message, publish, scored_messages

    settings = ctx_settings(ctx)
    try:
        fb = feedback_for_message(lambda ids: scored_messages(settings, ids), message_id=message_id, model=model,
                                  label=label, by=by, text=text, source=source, note=note)
    except FeedbackError as exc:
        raise fail(exc) from exc
    publish(settings, [fb])
    typer.echo(f"stored: {fb.model} {fb.message_id} ({fb.source or 'source unknown'}) -> {fb.label}")


@feedback_app.command("alert")
def feedback_alert(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(help="The alert's id (from `tonewatch alerts tail`).")],
    label: Annotated[str, typer.Option(help="Sentiment label for the alert's messages.")],
    by: Annotated[str, typer.Option()],
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Reply to an alert: label the messages that drove it (sentiment model)."""
    from models.feedback import FeedbackError, alert_feedback, canonical_label, find_alert, publish

    settings = ctx_settings(ctx)
    try:
        canonical_label("sentiment", label)
        records = alert_feedback(find_alert(settings, alert_id), label, by, note)
    except FeedbackError as exc:
        raise fail(exc) from exc
    publish(settings, records)
    typer.echo(f"stored {len(records)} labels from alert {alert_id}: " + ", ".join(r.message_id for r in records))


@feedback_app.command("list")
def feedback_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every stored correction (latest per message and model)."""
    from models.feedback import read_feedback

    for fb in read_feedback(ctx_settings(ctx)):
        line = (f"{fb.at:%Y-%m-%d %H:%M} {fb.model:<9} {fb.message_id:<16} {fb.source or '-':<4} {fb.label:<12} "
                f"by {fb.by}: {fb.text[:60]}")
        typer.echo(fb.model_dump_json() if as_json else line)


@feedback_app.command("export")
def feedback_export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(dir_okay=False, help="CSV with text,label,source columns.")],
    model: Annotated[str, typer.Option(help="sentiment or topic.")] = "sentiment",
) -> None:
    """One model's corrections as text,label,source (`tonewatch models evaluate --data` reads it)."""
    from models.feedback import FeedbackError, read_feedback, write_csv
    from models.labels import LABELS

    if model not in LABELS:
        raise fail(FeedbackError(f"unknown model '{model}' (known: {', '.join(LABELS)})"))
    n = write_csv(read_feedback(ctx_settings(ctx)), model, out)
    typer.echo(f"wrote {n} {model} rows to {out}")


def _recipe(name: str, mode: str, lr: float | None, epochs: int | None, train_layers: int | None,
            class_weights: bool | None) -> FinetuneConfig:
    """The command line's config, with v1's recipe for NAME wherever it leaves a choice open."""
    from models.bootstrap import V1
    from models.finetune import config_for

    return config_for(mode, lr, epochs=epochs or V1[name].epochs,
                      train_layers=train_layers or V1[name].train_layers,
                      class_weights=V1[name].class_weights if class_weights is None else class_weights)


def _failed(exc: Exception) -> None:  # the compose retrain service: reported; the next run still happens
    typer.echo(f"retrain failed: {exc}", err=True)


def retrain(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="sentiment or topic")],
    mode: Annotated[str, typer.Option(
        help="top (top layers: how v1 is built), head (frozen encoder), full or lora.")] = "top",
    margin: Annotated[float | None, typer.Option(help="Allowed weighted-F1 drop; default TONEWATCH_RETRAIN__MARGIN.")]
    = None,
    epochs: Annotated[int | None, typer.Option(
        min=1, help="Default: v1's recipe for NAME, so the gate compares like with like.")] = None,
    train_layers: Annotated[int | None, typer.Option(
        min=1, help="Mode top: encoder layers trained, from the top. Default: v1's recipe for NAME.")] = None,
    class_weights: Annotated[bool | None, typer.Option(
        "--class-weights/--no-class-weights",
        help="Inverse-frequency loss weights (full, lora, top). Default: v1's recipe for NAME.",
    )] = None,
    lr: Annotated[float | None, typer.Option(help="Encoder (full, top) or adapter (lora) learning rate.")] = None,
    limit: Annotated[int | None, typer.Option(help="First N texts of each split (smoke runs, tests).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda; default cuda when available.")] = None,
    push: Annotated[bool, typer.Option("--push", help="Publish the candidate if the gate passes.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    no_feedback: Annotated[bool, typer.Option("--no-feedback", help="Base data only; no Kafka needed.")] = False,
    every: Annotated[str | None, typer.Option(help="Run forever on a schedule, e.g. 24h.")] = None,
    on_drift: Annotated[bool, typer.Option("--on-drift", help="Run forever, once per drift event.")] = False,
) -> None:
    """Base data + feedback -> candidate; gate it against production; report (exit 0 passed, 3 refused)."""
    from models.feedback import read_feedback
    from models.labels import LABELS
    from models.retrain import PASSED, REFUSED, parse_every, run_retrain
    from models.retrain import on_drift as follow_drift
    from models.retrain_triggers import run_every

    settings = ctx_settings(ctx)
    if name not in LABELS:
        raise typer.BadParameter(f"unknown model '{name}' (known: {', '.join(LABELS)})")
    try:
        interval = parse_every(every) if every else None
        cfg = _recipe(name, mode, lr, epochs, train_layers, class_weights)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    command = "tonewatch " + " ".join(sys.argv[1:])

    def once(_: Any = None) -> dict[str, Any]:
        report = run_retrain(settings, name, cfg, [] if no_feedback else read_feedback(settings),
                             margin=settings.retrain.margin if margin is None else margin, limit=limit,
                             do_push=push, device=device, command=command)
        typer.echo(json.dumps(report) if as_json else
                   f"{name}: {report['decision']} ({report['gate']['reason']}); report {report['report']}"
                   + (f"; pushed as v{report['pushed_version']}" if report["pushed_version"] else ""))
        return report

    if on_drift:
        follow_drift(settings, name, once, _failed)
    elif interval:
        run_every(once, interval, _failed)
    raise typer.Exit(PASSED if once()["decision"] == "passed" else REFUSED)


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """``tonewatch feedback ...`` and ``tonewatch retrain``."""
    app.add_typer(feedback_app, name="feedback")
    app.command("retrain")(retrain)
