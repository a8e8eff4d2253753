"""The PostgreSQL history store (issue #30): ``sink`` fills it from the topics; ``trends``, ``alerts history`` and
``messages search`` read it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import typer

from tonewatch.commands import ctx_settings, fail, serve_until_signal
from tonewatch.core.errors import ConfigError, InvalidInput
from tonewatch.core.settings import Settings

NO_STORE = "no store configured (TONEWATCH_STORE__DSN, or run 'tonewatch up')"
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
CELL_CHARS = 60  # a message's text is cut to this in a table; --json has all of it

Since = Annotated[str, typer.Option(help="How far back: 30m, 12h, 7d, 2w.")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object a line.")]


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` or ``90s`` (one number and unit) as a timedelta; anything else, or zero, is
    an InvalidInput that names what is accepted."""
    found = _DURATION.fullmatch(text.strip().lower())
    if not found or int(found[1]) == 0:
        raise InvalidInput(f"'{text}' is not a duration: use a positive number and s, m, h, d or w (e.g. 7d)")
    return timedelta(**{_UNITS[found[2]]: int(found[1])})


def _since(text: str) -> datetime:
    try:
        return datetime.now(UTC) - parse_duration(text)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc


@contextmanager
def _store(settings: Settings) -> Iterator[Any]:
    """A connection for one command, or the refusal every command gives without a store."""
    if settings.store.dsn is None:
        raise fail(ConfigError(NO_STORE))
    import psycopg

    try:
        conn = psycopg.connect(settings.store.dsn.get_secret_value(), connect_timeout=10,
                               application_name="tonewatch-cli")
    except psycopg.OperationalError as exc:  # the server's message names host and user, never the password
        raise fail(ConnectionError(f"cannot reach the store: {str(exc).strip()}")) from exc
    with conn:
        yield conn


def _cell(value: Any) -> str:
    """A table cell: times to the second, floats to 3 digits; text printable only (a message is anyone's)."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    elif isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, default=str)
    text = str(value)
    shown = "".join(c if c.isprintable() else "?" for c in text[:CELL_CHARS])
    return shown + ("…" if len(text) > CELL_CHARS else "")


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as aligned columns under a header (the first row's keys); numbers right-aligned."""
    if not rows:
        return "(no rows)"
    heads = list(rows[0])
    cells = [[_cell(r.get(h)) for h in heads] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    numeric = [all(isinstance(r.get(h), int | float) for r in rows if r.get(h) is not None) for h in heads]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))

    return "\n".join(line(v).rstrip() for v in [heads, *cells])


def _show(rows: list[dict[str, Any]], as_json: bool, columns: Sequence[str]) -> None:
    """JSON: every column; a table: the ``columns`` a person scans (the payloads stay in --json)."""
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False, default=str))
    else:
        typer.echo(table([{c: r.get(c) for c in columns} for r in rows]))


def _query(ctx: typer.Context, run: Callable[[Any], list[dict[str, Any]]], as_json: bool,
           columns: Sequence[str]) -> None:
    import psycopg

    from tonewatch.store.errors import StoreError

    with _store(ctx_settings(ctx)) as conn:
        try:
            rows = run(conn)
        except (StoreError, psycopg.Error) as exc:  # e.g. no tables yet: the sink has never run on this store
            raise fail(ConnectionError(f"store query failed: {type(exc).__name__}: {str(exc).strip()}")) from exc
    _show(rows, as_json, columns)


def sink(ctx: typer.Context) -> None:
    """Fill the PostgreSQL history store from the topics until SIGTERM/SIGINT; an outage is waited out."""
    settings = ctx_settings(ctx)
    if settings.store.dsn is None:
        raise fail(ConfigError(NO_STORE))
    from tonewatch.store.sink import create_sink_metrics, run_sink

    metrics = create_sink_metrics()
    run_sink(settings, metrics, serve_until_signal(settings.store.metrics_port, settings.metrics_host,
                                                   metrics.registry))


def trends(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="TICKER", help="The ticker (or the key of --dimension).")],
    since: Since = "7d",
    dimension: Annotated[str, typer.Option(help="ticker, sector, topic or source.")] = "ticker",
    as_json: AsJson = False,
) -> None:
    """A key's trend windows from the store, oldest first."""
    from tonewatch.store.queries import ticker_trend

    start = _since(since)
    _query(ctx, lambda conn: ticker_trend(conn, key, start, dimension=dimension), as_json,
           ("window_start", "count", "negative", "share", "baseline", "z"))


def alerts_history(
    ctx: typer.Context,
    since: Since = "7d",
    key: Annotated[str | None, typer.Option(help="Only alerts of this key (e.g. a ticker).")] = None,
    as_json: AsJson = False,
) -> None:
    """Alert state changes from the store (firing, then resolved), oldest first."""
    from tonewatch.store.queries import alert_history

    start = _since(since)
    _query(ctx, lambda conn: alert_history(conn, start, key=key), as_json,
           ("window_start", "status", "severity", "dimension", "key", "z", "alert_id"))


def messages_search(
    ctx: typer.Context,
    text: Annotated[str | None, typer.Argument(metavar="[TEXT]", help="Words the message contains.")] = None,
    ticker: Annotated[str | None, typer.Option(help="Only messages about this ticker.")] = None,
    since: Since = "7d",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")] = 50,
    as_json: AsJson = False,
) -> None:
    """Scored messages from the store by text and/or ticker, most negative first."""
    from tonewatch.store.queries import search_messages

    start = _since(since)
    _query(ctx, lambda conn: search_messages(conn, text, ticker, start, limit=limit), as_json,
           ("ts", "source", "sentiment", "p_negative", "tickers", "text"))


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer | None = None) -> None:
    """``sink``, ``trends``, ``alerts history`` and the ``messages`` group."""
    app.command("sink")(sink)
    app.command("trends")(trends)
    alerts_app.command("history")(alerts_history)
    messages_app = typer.Typer(help="Search the scored messages in the history store.", no_args_is_help=True)
    messages_app.command("search")(messages_search)
    app.add_typer(messages_app, name="messages")
