"""Feedback records: validation against the label maps, latest-wins folding, the CSV export."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.evaluate import read_labelled_csv
from models.feedback import FeedbackError, alert_feedback, as_split, latest, make_feedback, write_csv
from models.labels import SENTIMENT, TOPIC


def _fb(mid: str, label: str, model: str = "sentiment", text: str = "t", minute: int = 0) -> object:
    return make_feedback(message_id=mid, model=model, label=label, text=text or mid, by="ana",
                         at=datetime(2026, 1, 5, 14, minute, tzinfo=UTC))


def test_labels_are_validated_and_canonicalised() -> None:
    fb = make_feedback(message_id="n1", model="topic", label="earnings", text="EPS beat", by="ana")
    assert fb.label == "Earnings" and fb.key == "topic|n1" and fb.at.tzinfo is not None
    with pytest.raises(FeedbackError, match="not one of sentiment's labels"):
        make_feedback(message_id="n1", model="sentiment", label="bullish", text="x", by="ana")
    with pytest.raises(FeedbackError, match="unknown model"):
        make_feedback(message_id="n1", model="emotion", label="joy", text="x", by="ana")


def test_unknown_message_without_text_and_missing_author_are_errors() -> None:
    with pytest.raises(FeedbackError, match="--text"):
        make_feedback(message_id="n9", model="sentiment", label="negative", text=None, by="ana")
    with pytest.raises(FeedbackError, match="'by'"):
        make_feedback(message_id="n9", model="sentiment", label="negative", text="x", by="  ")


def test_latest_correction_per_model_and_message_wins() -> None:
    rows = [_fb("a", "negative", minute=1), _fb("b", "neutral"), _fb("a", "positive", minute=2),
            _fb("a", "Earnings", model="topic")]
    folded = latest(rows)  # type: ignore[arg-type]
    assert [(f.key, f.label) for f in folded] == [("sentiment|b", "neutral"), ("sentiment|a", "positive"),
                                                   ("topic|a", "Earnings")]
    split = as_split(folded, "sentiment")
    assert split.labels == [SENTIMENT.index("neutral"), SENTIMENT.index("positive")]
    assert as_split(folded, "topic").labels == [TOPIC.index("Earnings")]


def test_export_is_readable_by_models_evaluate(tmp_path: Path) -> None:
    rows = [_fb("a", "negative", text="Shares, \"sink\"\nhard"), _fb("b", "positive", text="up"),
            _fb("c", "Dividend", model="topic", text="payout")]
    out = tmp_path / "fb.csv"
    assert write_csv(rows, "sentiment", out) == 2  # type: ignore[arg-type]
    with out.open(newline="") as fh:
        assert next(csv.reader(fh)) == ["text", "label", "source"]
    back = read_labelled_csv(out, "text", "label", SENTIMENT)
    assert back.texts == ["Shares, \"sink\"\nhard", "up"] and back.labels == [0, 2]


def test_a_reply_to_an_alert_labels_its_top_messages() -> None:
    alert = {"id": "ticker|TSLA|1", "top_messages": [
        {"message_id": "n1", "text": "TSLA recall", "source": "news", "p_negative": 0.9},
        {"message_id": "c2", "text": "meh", "source": "chat", "p_negative": 0.7}]}
    out = alert_feedback(alert, "Neutral", "ana", note="false alarm")
    assert [(f.message_id, f.model, f.label, f.alert_id) for f in out] == [
        ("n1", "sentiment", "neutral", "ticker|TSLA|1"), ("c2", "sentiment", "neutral", "ticker|TSLA|1")]
    with pytest.raises(FeedbackError, match="no messages"):
        alert_feedback({"id": "x", "top_messages": []}, "neutral", "ana")
