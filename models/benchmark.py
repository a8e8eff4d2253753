"""``tonewatch models report``: one table of every model's figures, on our test split and, when the
``../shared/data`` sets are present, on data the models never trained on (Financial PhraseBank,
StockEmotions; ``models.shared_sets``), skipping any a version trained on. The test split is also shown per
source (news, chat), and every row has the negative class's precision and recall."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.artifact import Manifest, read_manifest, version_numbers
from models.data import Split, load_dataset, text_sources
from models.domains import FOCUS
from models.evaluate import Predictor, Report, evaluate, evaluate_by_source, local_predictor
from models.shared_sets import SHARED_SETS, SharedSet, read_set


def never_trained_on(manifest: Manifest) -> list[SharedSet]:
    """The model's shared sets whose file this version did not learn from (a figure on those is held out)."""
    paths = {s.key: s.path for s in SHARED_SETS}
    seen = {paths.get(k, k) for k in manifest.shared_data or []}
    return [s for s in SHARED_SETS if s.model == manifest.name and s.path not in seen]


TEST_DATA = "test split (committed MIT data, seed 7)"


def committed_test(name: str) -> tuple[Split, list[str]]:
    """The committed test split and each text's source (news, chat)."""
    test = load_dataset(name).test
    return test, text_sources(name, test.texts)


def run_report(repo: Path, names: tuple[str, ...], shared_dir: Path | None, versions: dict[str, int] | None = None,
               device: str = "cpu", predictor: Callable[[Path, str], Predictor] = local_predictor,
               test_split: Callable[[str], tuple[Split, list[str]]] = committed_test) -> list[Report]:
    """Per model: the test split over all texts, then per source when it has several (sentiment: news, chat),
    then each shared set the version never trained on. ``predictor`` and ``test_split`` stand in for a version
    and the committed data in tests."""
    reports = []
    for name in names:
        version = (versions or {}).get(name) or max(version_numbers(repo, name))
        vdir = repo / name / str(version)
        manifest = read_manifest(vdir)
        labels = manifest.labels
        predict = predictor(vdir, device)
        test, sources = test_split(name)
        by_source = evaluate_by_source(predict, test, sources, labels, model=name, version=str(version),
                                       data=TEST_DATA)
        reports += list(by_source.values()) if len(by_source) > 2 else [by_source["all"]]
        for ext in never_trained_on(manifest):
            split = read_set(shared_dir, ext, labels) if shared_dir else None
            if split is not None:
                reports.append(evaluate(predict, split, labels, model=name, version=str(version), data=ext.title))
    return reports


def _negative(r: Report) -> str:
    """Precision and recall of the class alerts count; '- | -' for a model without it (topic)."""
    row = next((c for c in r.per_class if c["label"] == FOCUS), None)
    return "- | -" if row is None else f"{row['precision']:.4f} | {row['recall']:.4f}"


def markdown(reports: list[Report], repo: Path) -> str:
    lines = ["| model | version (mode) | data | n | accuracy | macro-F1 | weighted-F1 | negative precision | "
             "negative recall |", "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        mode = read_manifest(repo / r.model / r.version).mode
        lines.append(f"| {r.model} | v{r.version} ({mode}) | {r.data} | {r.n} | {r.accuracy:.4f} | "
                     f"{r.macro_f1:.4f} | {r.weighted_f1:.4f} | {_negative(r)} |")
    return "\n".join(lines) + "\n"
