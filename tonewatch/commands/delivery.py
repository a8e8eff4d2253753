"""Incidents and alerts: reading them (``alerts tail``, ``alerts list``) and delivering incidents (issues #5,
#28): the notifier, subscriptions, webhooks, Alertmanager, Grafana annotations, ack."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings, serve_until_signal


def alerts_tail(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new incidents.")] = False,
    ticker: Annotated[str | None, typer.Option(help="Only incidents with this ticker.")] = None,
    topic: Annotated[str | None, typer.Option(help="Only incidents with this topic label.")] = None,
    min_severity: Annotated[str | None, typer.Option(help="warning or critical.")] = None,
    per_key: Annotated[bool, typer.Option("--per-key", help="The per-key alerts instead of incidents.")] = False,
) -> None:
    """Print every incident version (children indented), then exit once caught up (or follow)."""
    from tonewatch.alerts_cli import dumps, format_alert, format_incident, tail, tail_incidents

    if min_severity not in (None, "info", "warning", "critical"):
        raise typer.BadParameter("--min-severity must be info, warning or critical")
    settings = ctx_settings(ctx)
    docs = (tail if per_key else tail_incidents)(settings, follow=follow, ticker=ticker, topic=topic,
                                                 min_severity=min_severity)
    show = format_alert if per_key else format_incident
    try:
        for doc in docs:
            typer.echo(dumps(doc) if as_json else show(doc))
    except KeyboardInterrupt:
        pass


def notifier(ctx: typer.Context) -> None:
    """Group alerts into incidents and deliver them to subscriptions (webhooks, Alertmanager, Grafana) until
    SIGTERM/SIGINT."""
    from tonewatch.notify.metrics import create_notifier_metrics
    from tonewatch.notify.notifier import Notifier

    settings = ctx_settings(ctx)
    metrics = create_notifier_metrics()
    Notifier(settings, metrics).run(serve_until_signal(settings.delivery.metrics_port, settings.metrics_host,
                                                       metrics.registry))


def subscribe(
    ctx: typer.Context,
    webhook: Annotated[str | None, typer.Option(help="POST signed JSON to this URL.")] = None,
    alertmanager: Annotated[str | None, typer.Option(help="Alertmanager base URL (v2 API).")] = None,
    grafana: Annotated[str | None, typer.Option(help="Grafana base URL (annotations).")] = None,
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    ticker: Annotated[str | None, typer.Option(help="Only incidents with this ticker.")] = None,
    topic: Annotated[str | None, typer.Option(help="Only incidents with this topic label.")] = None,
    dimension: Annotated[str | None, typer.Option(
        help="Only incidents with an alert of this dimension (ticker, sector, topic or source).")] = None,
    min_severity: Annotated[str | None, typer.Option(help="info, warning or critical.")] = None,
    secret_env: Annotated[str | None, typer.Option(
        help="Webhook only: NAME of the env var holding this subscription's signing secret.")] = None,
) -> None:
    """Add a subscription (filters + one destination) and print its id."""
    from pydantic import ValidationError

    from tonewatch.notify.store import save_subscription
    from tonewatch.notify.subscriptions import new_subscription

    dests = {k: v for k, v in (("webhook", webhook), ("alertmanager", alertmanager), ("grafana", grafana)) if v}
    if len(dests) != 1:
        raise typer.BadParameter("give exactly one of --webhook, --alertmanager, --grafana")
    if secret_env and "webhook" not in dests:
        raise typer.BadParameter("--secret-env applies to --webhook only")
    kind, url = next(iter(dests.items()))
    try:
        sub = new_subscription(kind=kind, url=url, name=name, ticker=ticker, topic=topic, dimension=dimension,
                               min_severity=min_severity, secret_env=secret_env)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(e["msg"] for e in exc.errors())) from exc
    save_subscription(ctx_settings(ctx), sub)
    typer.echo(sub.id)


def unsubscribe(ctx: typer.Context, sub_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove a subscription; queued deliveries to it are dead-lettered."""
    from tonewatch.notify.store import remove_subscription

    if not remove_subscription(ctx_settings(ctx), sub_id):
        typer.echo(f"error: no subscription '{sub_id}'", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {sub_id}")


def list_open(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    subscriptions: Annotated[bool, typer.Option("--subscriptions", help="The subscriptions instead.")] = False,
) -> None:
    """Show the open incidents (latest version of each), or with --subscriptions the subscriptions."""
    if subscriptions:
        from tonewatch.notify.store import list_subscriptions

        for sub in list_subscriptions(ctx_settings(ctx)).values():
            typer.echo(json.dumps(sub.model_dump(exclude_none=True)) if as_json else sub.describe())
        return
    from tonewatch.alerts_cli import dumps, format_incident, open_incidents

    for incident in open_incidents(ctx_settings(ctx)):
        typer.echo(dumps(incident) if as_json else format_incident(incident))


def ack(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(metavar="ID")],
    by: Annotated[str | None, typer.Option(help="Who acknowledges.")] = None,
    note: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
) -> None:
    """Acknowledge an incident (its id, or the id of one of its alerts): the notifier stops re-notifying it."""
    from tonewatch.notify.store import acknowledge

    acknowledge(ctx_settings(ctx), alert_id, by, note)
    typer.echo(f"acknowledged {alert_id}")


def bench(
    ctx: typer.Context,
    alerts: Annotated[int, typer.Option(min=1, help="Alerts to deliver.")] = 500,
    local: Annotated[bool, typer.Option(help="Start (and stop) a throwaway Kafka broker for the run.")] = True,
) -> None:
    """Print one JSON line: webhook delivery rate and produce->received p50/p99 latency."""
    import tempfile
    from pathlib import Path

    from tonewatch.notify.bench import run_delivery_bench
    from tonewatch.stack.kafka import start_kafka, stop_kafka

    settings = ctx_settings(ctx)
    if not local:
        typer.echo(json.dumps(run_delivery_bench(settings, alerts)))
        return
    with tempfile.TemporaryDirectory(prefix="tonewatch-nbench-") as tmp:
        kafka = start_kafka(settings, Path(tmp) / "kafka")
        try:
            result = run_delivery_bench(settings.updated(kafka__bootstrap=kafka.bootstrap), alerts)
        finally:
            stop_kafka(kafka)
    typer.echo(json.dumps(result))


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """The ``notifier`` service and ``alerts tail/subscribe/unsubscribe/list/ack/bench``."""
    alerts_app.command("tail")(alerts_tail)
    app.command("notifier")(notifier)
    alerts_app.command("subscribe")(subscribe)
    alerts_app.command("unsubscribe")(unsubscribe)
    alerts_app.command("list")(list_open)
    alerts_app.command("ack")(ack)
    alerts_app.command("bench")(bench)
