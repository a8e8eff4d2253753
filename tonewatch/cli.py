"""The one CLI, ``tonewatch``. Settings are built here, once per invocation, and passed down.

The commands live in ``tonewatch.commands``, one module per area; this module builds the app from them
and turns the errors a user can act on into one line instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from tonewatch.commands import console as console_cmds
from tonewatch.commands import delivery, evaluation, fail, feeds, local_stack, model_build, retrain, rollout
from tonewatch.commands import report as report_cmds
from tonewatch.commands import store as store_cmds
from tonewatch.core.errors import ConfigError, TonewatchError
from tonewatch.core.settings import Settings

app = typer.Typer(help="Tonewatch: streaming financial-sentiment risk monitor.", no_args_is_help=True)
alerts_app = typer.Typer(help="Read alerts.", no_args_is_help=True)
models_app = typer.Typer(help="Build and inspect the Triton models.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(models_app, name="models")


@app.callback()
def _root(ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        logging.getLogger("kafka").setLevel(logging.WARNING)


# one module per area; the order here is the order ``--help`` lists the commands in
for _area in (local_stack, feeds, model_build, delivery, evaluation, rollout, retrain, report_cmds, store_cmds,
              console_cmds):
    _area.register(app, alerts_app, models_app)


class RefusedLogin(logging.Handler):
    """Keeps kafka-python's last refused-login log line: the exception it raises afterwards names an
    unsupported protocol version instead (the broker drops the connection after a failed SASL login)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "SaslAuthenticate error" in text:
            self.reason = text.split("SaslAuthenticate error: ", 1)[1]


def kafka_failure(settings: Settings, exc: BaseException, refused: str | None = None) -> str:
    """One line a user can act on, with the connection settings but never the password."""
    how: str = settings.kafka.security_protocol
    if settings.kafka.sasl_mechanism:
        how += f", {settings.kafka.sasl_mechanism} as '{settings.kafka.sasl_username}'"
    text = str(exc)
    cause = refused or (text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}")
    cause = cause.rstrip(".") + _cert_hint(settings, text)
    return (f"tonewatch: cannot use Kafka at {settings.kafka.bootstrap} ({how}): {cause}. "
            "Check TONEWATCH_KAFKA__BOOTSTRAP and the TONEWATCH_KAFKA__SECURITY_PROTOCOL, _SASL_* and _SSL_* settings.")


def _cert_hint(settings: Settings, text: str) -> str:
    """TLS alerts name the symptom; a broker that requires client certificates answers a missing or
    untrusted one with the same alert, so say which of the two this client sent."""
    if not any(alert in text for alert in ("ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN",
                                           "CERTIFICATE_REQUIRED")):
        return ""
    if settings.kafka.ssl_certfile is None:
        return (" (the broker requires a client certificate and none was sent: "
                "set TONEWATCH_KAFKA__SSL_CERTFILE and TONEWATCH_KAFKA__SSL_KEYFILE)")
    return (f" (the broker refused the client certificate {settings.kafka.ssl_certfile}: "
            "is it signed by a CA the broker trusts, and still valid?)")


def main() -> None:
    """Configuration and Kafka connection errors end in one clear line and exit 2, not a traceback;
    so does a ``TonewatchError`` no command handled, with exit 1."""
    import ssl

    from kafka.errors import KafkaError
    from pydantic import ValidationError

    refused = RefusedLogin()
    logging.getLogger("kafka.conn").addHandler(refused)
    try:
        app()
    except ValidationError as exc:  # without pydantic's input values: they would print the secrets
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                             for e in exc.errors(include_input=False, include_url=False))
        print(f"tonewatch: invalid settings: {problems}", file=sys.stderr)
        sys.exit(2)
    except ConfigError as exc:
        print(f"tonewatch: invalid settings: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KafkaError, ssl.SSLError) as exc:
        print(kafka_failure(Settings(), exc, refused.reason), file=sys.stderr)
        sys.exit(2)
    except TonewatchError as exc:  # raised on purpose: its message is the explanation, the stack is noise
        sys.exit(fail(exc, 1).exit_code)
    finally:
        logging.getLogger("kafka.conn").removeHandler(refused)
