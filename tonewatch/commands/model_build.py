"""Build and inspect the Triton models: ``models bootstrap``, ``train``, ``export-onnx``, ``evaluate``, ``report``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tonewatch.commands import ctx_settings, fail


def models_bootstrap(ctx: typer.Context) -> None:
    """Train version 1 of each model (the encoder's top 3 layers fine-tuned) if none exists."""
    from models.bootstrap import ensure_models

    built = ensure_models(ctx_settings(ctx))
    typer.echo(f"built: {', '.join(built) if built else 'nothing (version 1 present)'}")


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
        path = train_version(ctx_settings(ctx), name, cfg, version=version, limit=limit, device=device,
                             command="tonewatch " + " ".join(sys.argv[1:]), train_with=tuple(train_with or ()),
                             shared_dir=shared_dir)
    except SharedDataError as exc:
        raise typer.BadParameter(str(exc)) from exc
    from models.artifact import read_manifest

    m = read_manifest(path)
    t = m.metrics["test"]
    typer.echo(f"{path}: {m.mode}, test accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}, "
               f"weighted-F1 {t['weighted_f1']:.4f}, trained in {m.metrics['train_seconds']}s on {m.metrics['device']}")


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

    repo = ctx_settings(ctx).triton.model_repository
    version = version or max(version_numbers(repo, name), default=0)
    vdir = repo / name / str(version)
    val = load_dataset(name).val
    manifest = attach_onnx(vdir, val, threads)
    figures = {rt: speed(Classifier(vdir, "cpu", threads, runtime=rt), val.texts[:512]) for rt in ("torch", "onnx")}
    typer.echo(json.dumps({"version": str(vdir), "runtime": manifest.runtime,
                           "texts_per_s": figures, "speedup": round(figures["onnx"] / figures["torch"], 2)}))


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
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, and a confusion-matrix PNG;
    with --split, sentiment's news and chat texts are also shown apart."""
    from models.artifact import read_manifest, version_numbers
    from models.data import load_dataset, text_sources
    from models.evaluate import (
        EvalDataError,
        confusion_png,
        evaluate_by_source,
        format_report,
        local_predictor,
        read_labelled_csv,
        triton_predictor,
    )

    settings = ctx_settings(ctx)
    repo = settings.triton.model_repository
    if (data is None) == (split is None):
        raise typer.BadParameter("give exactly one of --data CSV or --split test|val")
    if version is None:
        found = version_numbers(repo, name)
        if not found:
            raise typer.BadParameter(f"no versions of '{name}' under {repo}")
        version = found[-1]
    labels = read_manifest(repo / name / str(version)).labels
    try:
        if data is not None:  # one CSV is one source, so nothing is shown apart
            part, what = read_labelled_csv(data, text_column, label_column, labels), str(data)
            sources = ["csv"] * len(part.texts)
        else:
            ds = load_dataset(name)
            if split not in ("test", "val"):
                raise typer.BadParameter("--split must be test or val")
            part, what = (ds.test if split == "test" else ds.val), f"{split} split (committed MIT data, seed 7)"
            sources = text_sources(name, part.texts)
    except EvalDataError as exc:
        raise fail(exc) from exc
    predict = (triton_predictor(settings.triton.grpc_url, name, str(version)) if served
               else local_predictor(repo / name / str(version), device))
    reports = evaluate_by_source(predict, part, sources, labels, model=name, version=str(version),
                                 data=what + (" via Triton" if served else ""))
    report, by_source = reports["all"], {s: r for s, r in reports.items() if s != "all" and len(reports) > 2}
    png = confusion_png(report, confusion or Path("reports") / f"{name}-v{version}-confusion.png")
    typer.echo(json.dumps({**report.as_dict(), "by_source": {s: r.as_dict() for s, r in by_source.items()},
                           "confusion_png": str(png)}) if as_json
               else "\n\n".join(format_report(r) for r in [report, *by_source.values()])
               + f"\n\nconfusion matrix: {png}")


def models_report(
    ctx: typer.Context,
    shared: Annotated[Path, typer.Option(help="Third-party sets, read in place if present.")] = Path("../shared/data"),
    out: Annotated[Path | None, typer.Option(help="Also write the table to this Markdown file.")] = None,
    device: Annotated[str, typer.Option(help="cpu, or cuda (fp16, as Triton serves on GPU).")] = "cpu",
) -> None:
    """Newest version of each model on the test split and on ../shared sets it never trained on."""
    from models.benchmark import markdown, run_report
    from models.bootstrap import MODELS

    settings = ctx_settings(ctx)
    table = markdown(run_report(settings.triton.model_repository, MODELS, shared if shared.is_dir() else None,
                                device=device), settings.triton.model_repository)
    typer.echo(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)


def register(app: typer.Typer, alerts_app: typer.Typer, models_app: typer.Typer) -> None:
    """Add the build commands to the ``models`` group, in the order ``tonewatch models --help`` lists them."""
    models_app.command("bootstrap")(models_bootstrap)
    models_app.command("train")(models_train)
    models_app.command("export-onnx")(models_export_onnx)
    models_app.command("evaluate")(models_evaluate)
    models_app.command("report")(models_report)
