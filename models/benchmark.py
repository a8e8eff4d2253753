"""``tonewatch models report``: one table of every model's figures, on our test split and, when the
``../shared/data`` sets are present, on data the models never trained on (Financial PhraseBank,
StockEmotions; ``models.shared_sets``), skipping any a version trained on."""

from __future__ import annotations

from pathlib import Path

from models.artifact import Manifest, read_manifest, version_numbers
from models.data import load_dataset
from models.evaluate import Predictor, Report, evaluate, local_predictor
from models.shared_sets import SHARED_SETS, SharedSet, read_set


def never_trained_on(manifest: Manifest) -> list[SharedSet]:
    """The model's shared sets whose file this version did not learn from (a figure on those is held out)."""
    paths = {s.key: s.path for s in SHARED_SETS}
    seen = {paths.get(k, k) for k in manifest.shared_data or []}
    return [s for s in SHARED_SETS if s.model == manifest.name and s.path not in seen]


def run_report(repo: Path, names: tuple[str, ...], shared_dir: Path | None, versions: dict[str, int] | None = None,
               device: str = "cpu") -> list[Report]:
    reports = []
    for name in names:
        version = (versions or {}).get(name) or max(version_numbers(repo, name))
        vdir = repo / name / str(version)
        manifest = read_manifest(vdir)
        labels = manifest.labels
        predict: Predictor = local_predictor(vdir, device)
        reports.append(evaluate(predict, load_dataset(name).test, labels, model=name, version=str(version),
                                data="test split (committed MIT data, seed 7)"))
        for ext in never_trained_on(manifest):
            split = read_set(shared_dir, ext, labels) if shared_dir else None
            if split is not None:
                reports.append(evaluate(predict, split, labels, model=name, version=str(version), data=ext.title))
    return reports


def markdown(reports: list[Report], repo: Path) -> str:
    lines = ["| model | version (mode) | data | n | accuracy | macro-F1 | weighted-F1 |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        mode = read_manifest(repo / r.model / r.version).mode
        lines.append(f"| {r.model} | v{r.version} ({mode}) | {r.data} | {r.n} | {r.accuracy:.4f} | "
                     f"{r.macro_f1:.4f} | {r.weighted_f1:.4f} |")
    return "\n".join(lines) + "\n"
