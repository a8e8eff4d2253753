"""``tonewatch models report``: one table of every model's figures, on our test split and, when the
``../shared/data`` sets are present, on data the models never trained on (Financial PhraseBank,
StockEmotions). Those sets are read in place and never copied into the repository (licences)."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.artifact import read_manifest, version_numbers
from models.data import Split, load_dataset
from models.evaluate import Predictor, Report, evaluate, local_predictor, read_labelled_csv


@dataclass(frozen=True)
class ExternalSet:
    model: str
    name: str
    path: str  # relative to the shared data folder
    text_column: str
    label_column: str
    min_agreement: int | None = None
    note: str = ""


EXTERNAL = (
    ExternalSet("sentiment", "Financial PhraseBank (all agreement levels)", "financial_phrasebank/data.csv",
                "text", "label", note="non-commercial licence: evaluation only"),
    ExternalSet("sentiment", "Financial PhraseBank (100% agreement)", "financial_phrasebank/data.csv",
                "text", "label", min_agreement=100),
    ExternalSet("sentiment", "StockEmotions StockTwits (bullish/bearish only)", "stockemotions/data.csv",
                "original", "senti_label", note="two classes: a 'neutral' prediction counts as an error"),
)


def _external_split(data_dir: Path, ext: ExternalSet, labels: list[str]) -> Split | None:
    path = data_dir / ext.path
    if not path.is_file():
        return None
    if ext.min_agreement is None:
        return read_labelled_csv(path, ext.text_column, ext.label_column, labels)
    with path.open(encoding="utf-8", newline="") as fh, tempfile.NamedTemporaryFile(
        "w", suffix=".csv", encoding="utf-8", newline="", delete=False
    ) as out:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(r for r in reader if int(r.get("agreement") or 0) >= ext.min_agreement)
    try:
        return read_labelled_csv(Path(out.name), ext.text_column, ext.label_column, labels)
    finally:
        Path(out.name).unlink()


def run_report(repo: Path, names: tuple[str, ...], shared_dir: Path | None, versions: dict[str, int] | None = None,
               device: str = "cpu") -> list[Report]:
    reports = []
    for name in names:
        version = (versions or {}).get(name) or max(version_numbers(repo, name))
        vdir = repo / name / str(version)
        labels = read_manifest(vdir).labels
        predict: Predictor = local_predictor(vdir, device)
        reports.append(evaluate(predict, load_dataset(name).test, labels, model=name, version=str(version),
                                data="test split (committed MIT data, seed 7)"))
        for ext in EXTERNAL:
            split = _external_split(shared_dir, ext, labels) if shared_dir and ext.model == name else None
            if split is not None:
                reports.append(evaluate(predict, split, labels, model=name, version=str(version), data=ext.name))
    return reports


def markdown(reports: list[Report], repo: Path) -> str:
    lines = ["| model | version (mode) | data | n | accuracy | macro-F1 | weighted-F1 |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        mode = read_manifest(repo / r.model / r.version).mode
        lines.append(f"| {r.model} | v{r.version} ({mode}) | {r.data} | {r.n} | {r.accuracy:.4f} | "
                     f"{r.macro_f1:.4f} | {r.weighted_f1:.4f} |")
    return "\n".join(lines) + "\n"
