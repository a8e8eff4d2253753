"""Detector evaluation: NAB and injected-surge scenarios (issue #5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings, fail
from tonewatch.core.errors import ConfigError


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """Add ``tonewatch eval nab``, ``tonewatch eval scenarios`` and ``tonewatch eval quantify``."""
    eval_app = typer.Typer(help="Evaluate the surge detector offline (NAB series, injected surges).",
                           no_args_is_help=True)
    app.add_typer(eval_app, name="eval")

    @eval_app.command("nab")
    def nab(
        ctx: typer.Context,
        data: Annotated[Path, typer.Option(help="Folder of NAB-format CSVs (timestamp,value), searched recursively.",
                                           exists=True, file_okay=False)],
        out: Annotated[Path, typer.Option(help="Where to write timestamp,value,anomaly_score CSVs (same layout).")],
        alpha: Annotated[float, typer.Option(help="EWMA weight of the baseline level per point.")] = 0.05,
        dev_alpha: Annotated[float, typer.Option(help="EWMA weight of the baseline spread per point.")] = 0.002,
        cooldown: Annotated[int, typer.Option(help="Points after a resolve with no new alert.")] = 12,
        prefix: Annotated[str, typer.Option(help="Put before each file name (NAB's results layout: tonewatch_).")] = "",
    ) -> None:
        """Score every NAB-format series (counts, or metrics either way) with the detector's volume evidence."""
        from tonewatch.evaluation.nab import NabConfig, score_tree

        s = ctx_settings(ctx)
        cfg = NabConfig(alpha=alpha, dev_alpha=dev_alpha, z=s.detector.volume_z, min_ratio=s.detector.volume_min_ratio,
                        clip=s.detector.robust_clip, cooldown=cooldown, drift=s.detector.change_drift)
        try:
            written, skipped = score_tree(data, out, cfg, prefix)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--data") from exc
        for rel, rows in written:
            typer.echo(f"{out / rel}: {rows} rows")
        for rel, why in skipped:
            typer.echo(f"skipped {data / rel}: {why}", err=True)
        typer.echo(f"scored {len(written)} files into {out}, skipped {len(skipped)}")

    @eval_app.command("scenarios")
    def scenarios(
        ctx: typer.Context,
        seed: Annotated[int, typer.Option(help="Random seed: same seed, same figures.")] = 7,
        keys: Annotated[int, typer.Option(min=1, help="Scenarios per kind (a pair is two keys).")] = 12,
        hours: Annotated[float, typer.Option(min=3, help="Simulated event time per key (seasonal: 2 days).")] = 6.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Run the real detector over simulated keys, per scenario kind: recall, false alerts, delay."""

        from tonewatch.evaluation.scenarios import report_lines, run_scenarios

        cfg = ctx_settings(ctx).detector.model_copy(update={"top_messages": 0})  # drivers don't change decisions
        summary = run_scenarios(cfg, keys=keys, hours=hours, seed=seed).summary()
        if as_json:
            typer.echo(json.dumps(summary))
            return
        for line in report_lines(summary):
            typer.echo(line)

    eval_app.command("quantify")(eval_quantify)
    eval_app.command("verdicts")(eval_verdicts)


def eval_verdicts(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The detector's precision on the analysts' verdicts (the console's true/false alarm, latest per incident)."""
    import psycopg

    from tonewatch.evaluation.verdicts import lines, read_precision

    settings = ctx_settings(ctx)
    if settings.store.dsn is None:
        raise fail(ConfigError("no store configured (TONEWATCH_STORE__DSN, or run 'tonewatch up')"))
    try:
        with psycopg.connect(settings.store.dsn.get_secret_value()) as conn:
            table = read_precision(conn)
    except psycopg.Error as exc:
        raise fail(ConnectionError(f"store query failed: {type(exc).__name__}: {str(exc).strip()}")) from exc
    typer.echo(json.dumps(table) if as_json else "\n".join(lines(table)))


def eval_quantify(
    ctx: typer.Context,
    version: Annotated[int | None, typer.Option(help="Sentiment version; default: the newest.")] = None,
    size: Annotated[int, typer.Option(min=10, help="Messages per sample.")] = 200,
    samples: Annotated[int, typer.Option(min=1, help="Samples per true negative share.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same figures.")] = 7,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N] for the test-split predictions.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Negative share on test samples at true shares 5%-60%: MAE of counted labels against PACC."""
    from models.artifact import ArtifactError, version_numbers
    from tonewatch.evaluation.quantify import load_posteriors, quantify, table_lines

    repo = ctx_settings(ctx).triton.model_repository
    vdir = repo / "sentiment" / str(version or max(version_numbers(repo, "sentiment"), default=0))
    try:
        post, rates = load_posteriors(vdir, device)
    except ArtifactError as exc:
        raise fail(exc) from exc
    summary = {"version": str(vdir), **quantify(post, rates, size=size, samples=samples, seed=seed)}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo(f"{vdir}")
    for line in table_lines(summary):
        typer.echo(line)
