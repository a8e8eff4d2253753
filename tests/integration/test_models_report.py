"""``tonewatch models report`` end to end on the versions ``make setup`` builds (ONNX on CPU, as served).

CI has no ``../shared``: a small folder in its layout stands in for it, and an experiment version trained
on StockEmotions (its manifest says so) must not be reported on StockEmotions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.artifact import MANIFEST, read_manifest
from models.benchmark import run_report
from models.bootstrap import ensure_models
from tests.integration.conftest import REPO
from tests.unit.test_shared_sets import _csv  # the shared folder layout, as its unit tests write it
from tonewatch.core.settings import Settings

pytestmark = pytest.mark.integration

PHRASEBANK = [  # (text, label, agreement)
    ("Operating profit fell to EUR 3.1 mn from EUR 9.8 mn a year earlier.", "negative", 100),
    ("Net sales rose 18 % to EUR 1.2 bn, beating expectations.", "positive", 100),
    ("The company will publish its interim report on 25 April.", "neutral", 100),
    ("The board proposes a dividend of EUR 0.50 per share.", "neutral", 75),
    ("Shares plunged after the group cut its full-year outlook.", "negative", 66),
]
STOCKEMOTIONS = [("$AAPL to the moon, loading more calls", "bullish"), ("$TSLA is done, sold everything", "bearish")]


def _rows(table: str) -> dict[tuple[str, str], list[str]]:
    """(model, data) -> the row's cells, from the Markdown table."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()[2:]]
    return {(c[0], c[2]): c for c in cells}


def test_report_prints_the_served_figures_and_skips_sets_a_version_trained_on(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tonewatch.cli import app

    live = REPO / "triton_repo"
    ensure_models(Settings().updated(run_dir=REPO / ".tonewatch", triton__model_repository=live))
    repo = tmp_path / "repo"
    for name in ("sentiment", "topic"):
        (repo / name).mkdir(parents=True)
        (repo / name / "1").symlink_to(live / name / "1", target_is_directory=True)
    experiment = repo / "sentiment" / "2"  # v1's weights, marked as trained on StockEmotions
    shutil.copytree(live / "sentiment" / "1", experiment)
    raw = json.loads((experiment / "artifact" / MANIFEST).read_text())
    (experiment / "artifact" / MANIFEST).write_text(json.dumps({**raw, "version": 2, "shared_data": ["stockemotions"]}))
    shared = tmp_path / "shared"
    _csv(shared / "financial_phrasebank" / "data.csv", [
        {"row_id": i, "text": t, "label": y, "agreement": a} for i, (t, y, a) in enumerate(PHRASEBANK)])
    _csv(shared / "stockemotions" / "data.csv", [
        {"id": i, "original": t, "senti_label": y} for i, (t, y) in enumerate(STOCKEMOTIONS)])
    out = tmp_path / "report.md"

    result = CliRunner().invoke(app, ["models", "report", "--shared", str(shared), "--out", str(out)],
                                env={"TONEWATCH_TRITON__MODEL_REPOSITORY": str(repo),
                                     "TONEWATCH_RUN_DIR": str(tmp_path)})

    assert result.exit_code == 0, result.output
    table = out.read_text()
    assert table in result.output
    rows = _rows(table)
    assert sorted(rows) == [
        ("sentiment", "Financial PhraseBank (100% agreement)"),
        ("sentiment", "Financial PhraseBank (all agreement levels)"),
        ("sentiment", "test split (committed MIT data, seed 7)"),
        ("sentiment", "test split (committed MIT data, seed 7): chat"),
        ("sentiment", "test split (committed MIT data, seed 7): news"),
        ("topic", "test split (committed MIT data, seed 7)"),
    ]  # StockEmotions is left out: the newest sentiment version learnt from it
    for name, version in (("sentiment", 2), ("topic", 1)):
        row = rows[(name, "test split (committed MIT data, seed 7)")]
        test = read_manifest(repo / name / str(version)).metrics["test"]  # measured when the version was written
        assert row[1] == f"v{version} (top)"
        assert row[4:7] == [f"{test['accuracy']:.4f}", f"{test['macro_f1']:.4f}", f"{test['weighted_f1']:.4f}"]
    assert rows[("sentiment", "Financial PhraseBank (all agreement levels)")][3] == "5"
    assert rows[("sentiment", "Financial PhraseBank (100% agreement)")][3] == "3"

    v1 = run_report(repo, ("sentiment",), shared, versions={"sentiment": 1})  # v1 never saw StockEmotions
    assert [(r.data, r.n) for r in v1][3:] == [
        ("Financial PhraseBank (all agreement levels)", 5), ("Financial PhraseBank (100% agreement)", 3),
        ("StockEmotions StockTwits (bullish/bearish only)", 2)]
    assert [r.data for r in run_report(repo, ("sentiment",), None, versions={"sentiment": 1})] == [
        "test split (committed MIT data, seed 7)", "test split (committed MIT data, seed 7): news",
        "test split (committed MIT data, seed 7): chat"]  # a fresh checkout: no ../shared, our own split only
