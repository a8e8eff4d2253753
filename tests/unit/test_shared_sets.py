"""``../shared`` sets as opt-in training data: what joins the training split, and why such a version is never served."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from models.artifact import experiment_only, model_card, read_manifest
from models.benchmark import never_trained_on
from models.data import Split
from models.labels import LABELS
from models.rollout.driver import RolloutError, servable
from models.shared_sets import SharedDataError, training_rows
from models.triton_admin import startup_versions
from tests.unit.test_models import _tiny_version
from tonewatch.core.settings import Settings

SENTIMENT = LABELS["sentiment"]


def _csv(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "shared"
    _csv(root / "financial_phrasebank" / "data.csv", [
        {"row_id": "1", "text": "Operating profit fell to EUR 3 mn", "label": "negative", "agreement": 100},
        {"row_id": "2", "text": "The  VAL text", "label": "neutral", "agreement": 100},  # in val: a leak
        {"row_id": "3", "text": "Sales rose 5 %", "label": "positive", "agreement": 66},
        {"row_id": "4", "text": "sales ROSE 5 %", "label": "positive", "agreement": 75},  # a duplicate
        {"row_id": "5", "text": "Known train text", "label": "neutral", "agreement": 50},  # already in train
    ])
    _csv(root / "stockemotions" / "data.csv", [
        {"id": "1", "original": "$AAPL to the moon", "senti_label": "bullish"},
        {"id": "2", "original": "$TSLA is done", "senti_label": "bearish"},
    ])
    return root


def test_training_rows_map_labels_and_drop_what_is_held_out_known_or_repeated(shared: Path) -> None:
    exclude = [Split(["known train text"], [1]), Split(["the val text"], [1]), Split(["a test text"], [0])]
    rows, lines = training_rows(shared, ("phrasebank", "stockemotions", "phrasebank"), "sentiment", SENTIMENT,
                                exclude)
    assert rows == Split(["Operating profit fell to EUR 3 mn", "Sales rose 5 %", "$AAPL to the moon", "$TSLA is done"],
                         [0, 2, 2, 0])
    assert lines == ["phrasebank: 2 rows, licence CC BY-NC-SA 3.0 (non-commercial)",
                     "stockemotions: 2 rows, licence none stated (research use)"]
    strict, _ = training_rows(shared, ("phrasebank100",), "sentiment", SENTIMENT, exclude)
    assert strict.texts == ["Operating profit fell to EUR 3 mn"]


def test_asking_for_a_set_that_cannot_be_used_is_a_clear_error(shared: Path, tmp_path: Path) -> None:
    with pytest.raises(SharedDataError, match=r"no shared set 'fiqa' for sentiment \(known: phrasebank, phrasebank100"):
        training_rows(shared, ("fiqa",), "sentiment", SENTIMENT, [])
    with pytest.raises(SharedDataError, match=r"no shared set 'phrasebank' for topic \(known: none\)"):
        training_rows(shared, ("phrasebank",), "topic", LABELS["topic"], [])
    with pytest.raises(SharedDataError, match=r"stockemotions/data\.csv is not there: --train-with stockemotions"):
        training_rows(tmp_path / "absent", ("stockemotions",), "sentiment", SENTIMENT, [])


def _mark(version_dir: Path, keys: list[str]) -> None:
    path = version_dir / "artifact" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "shared_data": keys}))


def test_a_version_trained_on_shared_data_is_reported_marked_and_never_served(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    settings = Settings().updated(run_dir=tmp_path / "run", triton__model_repository=repo)
    v1, v2 = _tiny_version(repo, version=1), _tiny_version(repo, version=2)
    _mark(v2, ["phrasebank100"])
    assert experiment_only(v2) and not experiment_only(v1)
    assert startup_versions(settings, "sentiment") == [1]  # not the newest: it is an experiment
    with pytest.raises(RolloutError, match=r"sentiment v2 was trained on phrasebank100 .*never served"):
        servable(settings, "sentiment", 2)
    servable(settings, "sentiment", 1)
    m2 = read_manifest(v2)
    assert "**experiment only**: trained on phrasebank100" in model_card(m2)
    # PhraseBank figures of v2 would not be held out (either subset shares its file); StockEmotions still is
    assert [s.key for s in never_trained_on(m2)] == ["stockemotions"]
    assert [s.key for s in never_trained_on(replace(m2, shared_data=None))] == [
        "phrasebank", "phrasebank100", "stockemotions"]


def test_models_train_with_a_shared_set_trains_on_it_and_marks_the_version(shared: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tonewatch.cli import app

    repo = tmp_path / "repo"
    env = {"TONEWATCH_TRITON__MODEL_REPOSITORY": str(repo), "TONEWATCH_RUN_DIR": str(tmp_path / "run")}
    args = ["models", "train", "sentiment", "--mode", "top", "--train-layers", "1", "--epochs", "1", "--limit", "24",
            "--max-length", "24", "--device", "cpu", "--shared-dir", str(shared)]
    refused = CliRunner().invoke(app, [*args, "--train-with", "fiqa"], env=env)
    assert refused.exit_code == 2 and "no shared set 'fiqa' for sentiment" in refused.output
    assert not repo.exists()  # refused before any training
    result = CliRunner().invoke(app, [*args, "--train-with", "stockemotions"], env=env)
    assert result.exit_code == 0, result.output
    m = read_manifest(repo / "sentiment" / "1")
    assert m.shared_data == ["stockemotions"]
    assert m.data.startswith("committed MIT data, split seed 7: 26 train / 24 val / 24 test")
    assert m.data.endswith("; train includes stockemotions: 2 rows, licence none stated (research use)")
    assert "**experiment only**" in (repo / "sentiment" / "1" / "artifact" / "MODEL_CARD.md").read_text()


def test_sync_checks_every_version_it_would_load() -> None:
    """`models sync` loaded whatever the events named, tampered or experimental artifacts included."""
    from models.rollout.driver import versions_to_sync
    from streams.control.routing import Route

    checked: list[int] = []

    def check(version: int) -> None:
        checked.append(version)
        if version == 4:
            raise RolloutError("sentiment v4 has a symlink in its artifact")

    assert versions_to_sync(Route(production=3, candidate=4), [], check) == [3]  # a bad candidate is left out
    assert checked == [3, 4]
    with pytest.raises(RolloutError, match="symlink"):
        versions_to_sync(Route(production=4), [], check)  # a bad production stops the sync
    with pytest.raises(RolloutError):
        versions_to_sync(Route(), [4], check)  # so does a bad start-up version
    assert versions_to_sync(Route(production=3, candidate=5), [], check) == [3, 5]
