"""The analyst console (issue #31): ``tonewatch console`` serves it, ``tonewatch console add-user`` adds a user."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings, fail
from tonewatch.core.errors import ConfigError, InvalidInput

NO_STORE = "the console needs the history store (TONEWATCH_STORE__DSN, or run 'tonewatch up')"

console_app = typer.Typer(help="The analyst console: triage incidents, relabel messages.", no_args_is_help=False)


@console_app.callback(invoke_without_command=True)
def serve(ctx: typer.Context) -> None:
    """Serve the console on console.host:console.port until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    settings = ctx_settings(ctx)
    if settings.store.dsn is None:
        raise fail(ConfigError(NO_STORE))
    from tonewatch.console.auth import UsersFileError, load_users

    try:
        users = load_users(settings.console.users_file)
    except UsersFileError as exc:
        raise fail(exc) from exc
    if not users:
        raise fail(ConfigError(f"no console users in {settings.console.users_file}: add one with "
                               "'tonewatch console add-user NAME --role analyst'"))
    import uvicorn

    from tonewatch.console.app import create_app
    from tonewatch.console.models_live import LiveModels
    from tonewatch.console.pg import KafkaConsoleWriter, PgConsoleStore

    store = PgConsoleStore(settings.store.dsn.get_secret_value())
    store.migrate()  # the console's tables, if the sink has not made them yet
    app = create_app(settings.console, users, store, store, KafkaConsoleWriter(settings),
                     models=LiveModels(settings, store.drift))
    typer.echo(f"console: http://{settings.console.host}:{settings.console.port}/ ({len(users)} users)")
    try:
        uvicorn.run(app, host=settings.console.host, port=settings.console.port, log_level="info",
                    server_header=False)
    finally:
        store.close()


@console_app.command("add-user")
def add_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The sign-in name.")],
    role: Annotated[str, typer.Option(help="analyst, ops or viewer.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin's first "
                                                 "line instead of a hidden prompt.")] = False,
) -> None:
    """Add a console user (or replace one's role and password) in console.users_file, written 0600."""
    from tonewatch.console.auth import ROLES
    from tonewatch.console.auth import add_user as save_user

    if role not in ROLES:
        raise typer.BadParameter(f"--role must be one of {', '.join(ROLES)}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    path = ctx_settings(ctx).console.users_file
    try:
        save_user(path, name, role, password)
    except InvalidInput as exc:
        raise fail(exc) from exc
    typer.echo(f"{name} ({role}) saved in {path}")


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer | None = None) -> None:
    """``console`` and ``console add-user``."""
    app.add_typer(console_app, name="console")
