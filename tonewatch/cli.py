"""The one CLI, ``tonewatch``. Settings are built here, once per invocation, and passed down."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings, delivery, evaluation, retrain, rollout
from tonewatch.commands import report as report_cmds
from tonewatch.core.settings import Settings

app = typer.Typer(help="Tonewatch: streaming financial-sentiment risk monitor.", no_args_is_help=True)
alerts_app = typer.Typer(help="Read alerts.", no_args_is_help=True)
models_app = typer.Typer(help="Build and inspect the Triton models.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(models_app, name="models")


def _settings(ctx: typer.Context) -> Settings:
    return ctx_settings(ctx)


@app.callback()
def _root(ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        logging.getLogger("kafka").setLevel(logging.WARNING)


@app.command()
def up(
    ctx: typer.Context,
    worker: Annotated[bool, typer.Option(help="Also start a worker and the alert notifier.")] = True,
    monitoring: Annotated[bool, typer.Option(help="Also start Prometheus and Alertmanager when installed.")] = True,
) -> None:
    """Start the local stack: Kafka, Triton with the models, a worker, the notifier, Prometheus, Alertmanager."""
    from tonewatch import stack

    state = stack.up(_settings(ctx), start_worker=worker, monitoring=None if monitoring else False)
    typer.echo(json.dumps({**state.endpoints, **state.urls}, indent=2))


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop the local stack started by ``tonewatch up``."""
    from tonewatch import stack

    stack.down(_settings(ctx))
    typer.echo("stack stopped")


@app.command()
def status(ctx: typer.Context) -> None:
    """Show each local component: pid, endpoint, readiness."""
    from tonewatch import stack

    typer.echo(json.dumps(stack.status(_settings(ctx)), indent=2, default=str))


@app.command()
def setup(ctx: typer.Context) -> None:
    """Fetch the Kafka broker jars and train models v1 if missing (idempotent)."""
    from models.bootstrap import ensure_models
    from tonewatch.stack.kafka import ensure_kafka_jars

    settings = _settings(ctx)
    typer.echo(f"kafka jars: {ensure_kafka_jars(settings)}")
    built = ensure_models(settings)
    typer.echo(f"models built: {', '.join(built) if built else 'none needed'}")


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run the Faust worker against the configured Kafka and Triton (any, not only local)."""
    import faust
    from prometheus_client import start_http_server

    from models.artifact import drift_reference
    from streams.app import create_app, tune_gc
    from streams.metrics import create_metrics
    from tonewatch.core.kafka_io import ensure_topics
    from tonewatch.core.topics import NAMES

    settings = _settings(ctx)
    (settings.run_dir / "faust").mkdir(parents=True, exist_ok=True)
    # every topic exists before the first send: a send to a missing topic stalls the producer
    ensure_topics(settings, [settings.topic(n) for n in NAMES])
    metrics = create_metrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.metrics_host, registry=metrics.registry)
    faust_app = create_app(settings, metrics, load_reference=drift_reference)
    tune_gc()
    faust.Worker(faust_app, loglevel="INFO").execute_from_commandline()


@app.command()
def replay(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    speed: Annotated[float | None, typer.Option(help="Pace by event time, N times faster than real time.")] = None,
) -> None:
    """Produce a JSONL feed (id, source, ts, text, ...) onto the news/chat topics, keeping event time."""
    from tonewatch.replay import replay as do_replay

    report = do_replay(_settings(ctx), file, speed)
    typer.echo(f"sent {report.sent} messages: " + ", ".join(f"{t}={n}" for t, n in report.per_topic.items()))


@alerts_app.command("tail")
def alerts_tail(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new alerts.")] = False,
    ticker: Annotated[str | None, typer.Option(help="Only this ticker.")] = None,
    topic: Annotated[str | None, typer.Option(help="Only this topic label.")] = None,
    min_severity: Annotated[str | None, typer.Option(help="warning or critical.")] = None,
) -> None:
    """Print every alert in the alerts topic, then exit once caught up (or follow)."""
    from tonewatch.alerts_cli import dumps, format_alert, tail

    if min_severity not in (None, "info", "warning", "critical"):
        raise typer.BadParameter("--min-severity must be info, warning or critical")
    try:
        for alert in tail(_settings(ctx), follow=follow, ticker=ticker, topic=topic, min_severity=min_severity):
            typer.echo(dumps(alert) if as_json else format_alert(alert))
    except KeyboardInterrupt:
        pass


@models_app.command("bootstrap")
def models_bootstrap(ctx: typer.Context) -> None:
    """Train version 1 of each model (the encoder's top 3 layers fine-tuned) if none exists."""
    from models.bootstrap import ensure_models

    built = ensure_models(_settings(ctx))
    typer.echo(f"built: {', '.join(built) if built else 'nothing (version 1 present)'}")


@models_app.command("train")
def models_train(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="sentiment or topic")],
    mode: Annotated[str, typer.Option(help="full, lora (merged into the encoder), top (only the top layers; "
                                            "fast on CPU) or head (frozen encoder).")] = "full",
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    train_layers: Annotated[int, typer.Option(min=1, help="Mode top: encoder layers trained, from the top.")] = 3,
    class_weights: Annotated[bool, typer.Option(
        help="Inverse-frequency loss weights (full, lora, top; head always weighs): rare classes' recall "
             "(macro-F1) over weighted-F1.")] = True,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens per text.")] = 96,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float | None, typer.Option(help="Encoder (full, top) or adapter (lora) learning rate.")] = None,
    patience: Annotated[int, typer.Option(min=1, help="Evaluations without macro-F1 gain before stopping.")] = 2,
    version: Annotated[int | None, typer.Option(help="Version number; default the next free one.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N texts of each split (smoke runs).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda; default cuda when available.")] = None,
    seed: Annotated[int, typer.Option()] = 7,
    train_with: Annotated[list[str] | None, typer.Option(
        help="Experiments only: add a ../shared set to the training split (phrasebank, phrasebank100, "
             "stockemotions; repeatable). Their licences forbid serving: the version is marked and never served.",
    )] = None,
    shared_dir: Annotated[Path, typer.Option(help="Where --train-with sets are read.")] = Path("../shared/data"),
) -> None:
    """Train a new version from the committed data, test the exported artifact, print its figures."""
    from models.finetune import config_for
    from models.labels import LABELS
    from models.shared_sets import SharedDataError
    from models.train import train_version

    if name not in LABELS:
        raise typer.BadParameter(f"unknown model '{name}' (known: {', '.join(LABELS)})")
    try:
        cfg = config_for(mode, lr, epochs=epochs, max_length=max_length, batch_size=batch_size, patience=patience,
                         seed=seed, train_layers=train_layers, class_weights=class_weights)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        path = train_version(_settings(ctx), name, cfg, version=version, limit=limit, device=device,
                             command="tonewatch " + " ".join(sys.argv[1:]), train_with=tuple(train_with or ()),
                             shared_dir=shared_dir)
    except SharedDataError as exc:
        raise typer.BadParameter(str(exc)) from exc
    from models.artifact import read_manifest

    m = read_manifest(path)
    t = m.metrics["test"]
    typer.echo(f"{path}: {m.mode}, test accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}, "
               f"weighted-F1 {t['weighted_f1']:.4f}, trained in {m.metrics['train_seconds']}s on {m.metrics['device']}")


@models_app.command("export-onnx")
def models_export_onnx(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="sentiment or topic")],
    version: Annotated[int | None, typer.Option(help="Default: the newest version in the repository.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="Threads for the speed comparison.")] = 2,
) -> None:
    """Add the ONNX Runtime graph to a version that predates it, then compare its speed with torch on CPU.

    Run before Triton loads the version: a changed folder is re-initialised on the next load.
    """
    from models.artifact import version_numbers
    from models.data import load_dataset
    from models.serving import Classifier
    from models.train import attach_onnx, speed

    repo = _settings(ctx).model_repository
    version = version or max(version_numbers(repo, name), default=0)
    vdir = repo / name / str(version)
    val = load_dataset(name).val
    manifest = attach_onnx(vdir, val, threads)
    figures = {rt: speed(Classifier(vdir, "cpu", threads, runtime=rt), val.texts[:512]) for rt in ("torch", "onnx")}
    typer.echo(json.dumps({"version": str(vdir), "runtime": manifest.runtime,
                           "texts_per_s": figures, "speedup": round(figures["onnx"] / figures["torch"], 2)}))


@models_app.command("evaluate")
def models_evaluate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="sentiment or topic")],
    data: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="CSV to evaluate on.")] = None,
    text_column: Annotated[str, typer.Option()] = "text",
    label_column: Annotated[str, typer.Option()] = "label",
    split: Annotated[str | None, typer.Option(help="Instead of --data: test or val of the committed data.")] = None,
    version: Annotated[int | None, typer.Option(help="Default: the newest version in the repository.")] = None,
    served: Annotated[bool, typer.Option(help="Through the running Triton (gRPC) instead of the artifact.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    confusion: Annotated[Path | None, typer.Option(help="Confusion-matrix PNG; default reports/<name>-vN.png")] = None,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, and a confusion-matrix PNG."""
    from models.artifact import read_manifest, version_numbers
    from models.data import load_dataset
    from models.evaluate import (
        EvalDataError,
        confusion_png,
        evaluate,
        format_report,
        local_predictor,
        read_labelled_csv,
        triton_predictor,
    )

    settings = _settings(ctx)
    repo = settings.model_repository
    if (data is None) == (split is None):
        raise typer.BadParameter("give exactly one of --data CSV or --split test|val")
    if version is None:
        found = version_numbers(repo, name)
        if not found:
            raise typer.BadParameter(f"no versions of '{name}' under {repo}")
        version = found[-1]
    labels = read_manifest(repo / name / str(version)).labels
    try:
        if data is not None:
            part, what = read_labelled_csv(data, text_column, label_column, labels), str(data)
        else:
            ds = load_dataset(name)
            if split not in ("test", "val"):
                raise typer.BadParameter("--split must be test or val")
            part, what = (ds.test if split == "test" else ds.val), f"{split} split (committed MIT data, seed 7)"
    except EvalDataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    predict = (triton_predictor(settings.triton_grpc_url, name, str(version)) if served
               else local_predictor(repo / name / str(version), device))
    report = evaluate(predict, part, labels, model=name, version=str(version),
                      data=what + (" via Triton" if served else ""))
    png = confusion_png(report, confusion or Path("reports") / f"{name}-v{version}-confusion.png")
    typer.echo(json.dumps({**report.as_dict(), "confusion_png": str(png)}) if as_json
               else format_report(report) + f"\n\nconfusion matrix: {png}")


@models_app.command("report")
def models_report(
    ctx: typer.Context,
    shared: Annotated[Path, typer.Option(help="Third-party sets, read in place if present.")] = Path("../shared/data"),
    out: Annotated[Path | None, typer.Option(help="Also write the table to this Markdown file.")] = None,
    device: Annotated[str, typer.Option(help="cpu, or cuda (fp16, as Triton serves on GPU).")] = "cpu",
) -> None:
    """Newest version of each model on the test split and on ../shared sets it never trained on."""
    from models.benchmark import markdown, run_report
    from models.bootstrap import MODELS

    settings = _settings(ctx)
    table = markdown(run_report(settings.model_repository, MODELS, shared if shared.is_dir() else None,
                                device=device), settings.model_repository)
    typer.echo(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)


@app.command()
def bench(
    ctx: typer.Context,
    messages: Annotated[int, typer.Option(help="Messages to push through.")] = 2000,
    local: Annotated[bool, typer.Option(help="Start (and stop) a local stack for the run.")] = True,
) -> None:
    """Print one JSON line: end-to-end msgs/s, p50/p99 produce->scored latency, per-stage rates."""
    import time

    from tonewatch.bench import run_bench
    from tonewatch.stack import down, up

    settings = _settings(ctx)
    if not local:  # the running worker's topics: a fresh prefix would be a topic set no worker reads
        typer.echo(json.dumps(run_bench(settings, messages)))
        return
    settings = settings.model_copy(update={"topic_prefix": f"bench-{time.strftime('%Y%m%d-%H%M%S')}"})
    state = up(settings)
    stacked = settings.model_copy(update={k: v for k, v in state.endpoints.items() if k in Settings.model_fields})
    try:
        result = run_bench(stacked, messages)
    finally:
        down(stacked)
    typer.echo(json.dumps(result))


@app.command("feed")
def build_feed(out: Annotated[Path, typer.Option()] = Path("data/sample_feed.jsonl")) -> None:
    """Rebuild the bundled sample feed (calm market, one $TSLA surge) from the committed data."""
    from tonewatch.feed import MALFORMED, build_feed, write_feed

    typer.echo(f"wrote {write_feed(out, build_feed(), MALFORMED)} lines to {out}")


@app.command()
def demo(
    ctx: typer.Context,
    feed: Annotated[Path, typer.Option()] = Path("data/sample_feed.jsonl"),
    speed: Annotated[float, typer.Option(help="Event-time pace of the replay.")] = 60.0,
) -> None:
    """The main job on the local stack: up, replay the sample feed, show alerts, summarise, down."""
    from tonewatch.demo import run_demo

    sys.exit(run_demo(_settings(ctx), feed, speed))


# command groups that live in their own modules, one per area (declarative, like the decorators above)
for _area in (delivery, evaluation, rollout, retrain, report_cmds):
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
    how: str = settings.kafka_security_protocol
    if settings.kafka_sasl_mechanism:
        how += f", {settings.kafka_sasl_mechanism} as '{settings.kafka_sasl_username}'"
    text = str(exc)
    cause = refused or (text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}")
    cause = cause.rstrip(".") + _cert_hint(settings, text)
    return (f"tonewatch: cannot use Kafka at {settings.kafka_bootstrap} ({how}): {cause}. "
            "Check TONEWATCH_KAFKA_BOOTSTRAP and the TONEWATCH_KAFKA_SECURITY_PROTOCOL, _SASL_* and _SSL_* settings.")


def _cert_hint(settings: Settings, text: str) -> str:
    """TLS alerts name the symptom; a broker that requires client certificates answers a missing or
    untrusted one with the same alert, so say which of the two this client sent."""
    if not any(alert in text for alert in ("ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN",
                                           "CERTIFICATE_REQUIRED")):
        return ""
    if settings.kafka_ssl_certfile is None:
        return (" (the broker requires a client certificate and none was sent: "
                "set TONEWATCH_KAFKA_SSL_CERTFILE and TONEWATCH_KAFKA_SSL_KEYFILE)")
    return (f" (the broker refused the client certificate {settings.kafka_ssl_certfile}: "
            "is it signed by a CA the broker trusts, and still valid?)")


def main() -> None:
    """Configuration and Kafka connection errors end in one clear line and exit 2, not a traceback."""
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
    except (KafkaError, ssl.SSLError) as exc:
        print(kafka_failure(Settings(), exc, refused.reason), file=sys.stderr)
        sys.exit(2)
    finally:
        logging.getLogger("kafka.conn").removeHandler(refused)
