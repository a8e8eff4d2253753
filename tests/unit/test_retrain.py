"""The retrain job's pure parts: the gate, feedback hygiene, schedules, drift triggers, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.data import Split, apply_corrections
from models.retrain import gate, held_out_filter, markdown, parse_every, prune_staged, write_report


def test_gate_allows_a_drop_within_the_margin_only() -> None:
    assert gate(0.74, 0.745, 0.01).passed
    assert gate(0.735, 0.745, 0.01).passed  # exactly at the floor
    refused = gate(0.73, 0.745, 0.01)
    assert not refused.passed and "< production 0.7450" in refused.reason
    assert not gate(0.80, 0.79, -0.05).passed  # a negative margin demands an improvement
    assert gate(0.5, None, 0.01).passed


def test_feedback_never_enters_the_evaluation_sets() -> None:
    rows = Split(["New text", "the  TEST text", "val text", "other"], [0, 1, 2, 0])
    kept, dropped = held_out_filter(rows, [Split(["Val Text"], [1]), Split(["The test text"], [0])])
    assert kept.texts == ["New text", "other"] and kept.labels == [0, 0] and dropped == 2


def test_a_correction_relabels_a_training_text_in_place_and_new_texts_are_appended() -> None:
    base = Split(["a b", "c"], [0, 1])
    corrected, new = apply_corrections(base, Split(["A  B", "d", "d", "e"], [2, 0, 1, 2]))
    assert corrected.texts == base.texts and corrected.labels == [2, 1]
    assert new.texts == ["d", "e"] and new.labels == [1, 2]


def test_parse_every() -> None:
    assert parse_every("24h") == 86400 and parse_every("30m") == 1800 and parse_every("90s") == 90
    assert parse_every("1.5d") == 129600
    for bad in ("", "24", "h", "0h", "-1h", "3w"):
        with pytest.raises(ValueError):
            parse_every(bad)


def _report() -> dict:
    fig = {"n": 100, "accuracy": 0.8, "macro_f1": 0.7, "weighted_f1": 0.75, "per_class": []}
    return {"model": "sentiment", "at": "20260105T120000Z", "mode": "head", "command": "x", "limit": None,
            "data": {"train": 10, "val": 5, "test": 5, "feedback_rows": 3, "feedback_used": 2,
                     "feedback_new_texts": 1, "feedback_relabelled": 1, "feedback_dropped_held_out": 1},
            "production": {"version": 1, **fig}, "candidate": {"staged": None, **fig, "weighted_f1": 0.6},
            "gate": {"passed": False, "candidate": 0.6, "production": 0.75, "margin": 0.01, "reason": "r"},
            "decision": "refused", "pushed_version": None, "seconds": 1.0}


def test_report_is_written_as_json_and_markdown(tmp_path: Path) -> None:
    path = write_report(tmp_path / "reports", _report())
    assert json.loads(path.read_text())["decision"] == "refused"
    md = path.with_suffix(".md").read_text()
    assert "**refused**" in md and "| production v1 | 100 | 0.8000 | 0.7000 | 0.7500 |" in md
    assert "| candidate | 100 | 0.8000 | 0.7000 | 0.6000 |" in md and "1 dropped (in val/test)" in md
    assert markdown(_report()).startswith("# Retrain sentiment (head)")


def test_only_the_newest_staged_candidates_of_the_model_are_kept(tmp_path: Path) -> None:
    stamps = ["20260105T120000Z", "20260106T090000Z", "20260106T100000Z", "20260107T000000Z"]
    for s in stamps:
        (tmp_path / f"sentiment-{s}" / "sentiment" / "1").mkdir(parents=True)
    (tmp_path / "topic-20260101T000000Z").mkdir()  # another model's
    (tmp_path / "sentiment-notes").mkdir()  # not a staged candidate
    (tmp_path / "sentiment-20260101T000000Z.json").write_text("{}")  # not a folder

    removed = prune_staged(tmp_path, "sentiment", keep=2)
    assert [p.name for p in removed] == [f"sentiment-{s}" for s in stamps[:2]]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["sentiment-20260101T000000Z.json", "sentiment-20260106T100000Z", "sentiment-20260107T000000Z",
                    "sentiment-notes", "topic-20260101T000000Z"]
    assert prune_staged(tmp_path, "sentiment", keep=2) == []
    assert [p.name for p in prune_staged(tmp_path, "sentiment", keep=0)] == [f"sentiment-{s}" for s in stamps[2:]]
    assert prune_staged(tmp_path / "missing", "sentiment", keep=3) == []


def test_retrain_trains_each_model_with_its_v1_recipe_unless_told(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """The gate compares a candidate with production: same recipe, or a 'refused' only says the recipe differs."""
    from dataclasses import replace
    from typing import Any

    from typer.testing import CliRunner

    import models.retrain
    from models.bootstrap import V1
    from models.finetune import FinetuneConfig
    from tonewatch.cli import app

    seen: list[tuple[str, FinetuneConfig]] = []

    def run_retrain(settings: Any, name: str, cfg: FinetuneConfig, feedback: list[Any], **_: Any) -> dict[str, Any]:
        seen.append((name, cfg))
        return {"decision": "passed", "gate": {"reason": "stub"}, "report": "r.json", "pushed_version": None}

    monkeypatch.setattr(models.retrain, "run_retrain", run_retrain)
    env = {"TONEWATCH_RUN_DIR": str(tmp_path)}
    for args in (["sentiment"], ["topic"], ["topic", "--epochs", "2"], ["sentiment", "--class-weights"]):
        result = CliRunner().invoke(app, ["retrain", *args, "--no-feedback"], env=env)
        assert result.exit_code == 0, result.output
    assert V1["sentiment"].epochs != V1["topic"].epochs
    assert V1["sentiment"].class_weights != V1["topic"].class_weights
    assert seen == [("sentiment", V1["sentiment"]), ("topic", V1["topic"]), ("topic", replace(V1["topic"], epochs=2)),
                    ("sentiment", replace(V1["sentiment"], class_weights=True))]
