"""Issue #29 item 5: a correction knows its source, and chat relabels weigh more in retraining."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.data import Split, apply_corrections
from models.feedback import (
    Feedback,
    FeedbackError,
    ScoredMessage,
    alert_feedback,
    as_split,
    feedback_for_message,
    make_feedback,
    sources_by_text,
)
from models.labels import SENTIMENT
from models.retrain import feedback_sources, markdown
from models.train import weight_chat_rows

NEG, NEU, POS = (SENTIMENT.index(x) for x in ("negative", "neutral", "positive"))


def _fb(mid: str, text: str, source: str | None, label: str = "negative") -> Feedback:
    return make_feedback(message_id=mid, model="sentiment", label=label, text=text, by="ana", source=source,
                         at=datetime(2026, 1, 5, 14, 0, tzinfo=UTC))


def test_records_stored_before_the_source_existed_still_load() -> None:
    old = {"message_id": "m1", "model": "sentiment", "label": "negative", "text": "guidance cut", "by": "ana",
           "at": "2026-01-05T14:00:00Z", "alert_id": None, "note": None}
    fb = Feedback.model_validate_json(json.dumps(old))
    assert fb.source is None and fb.label == "negative"
    assert Feedback.model_validate_json(fb.model_dump_json()) == fb
    with pytest.raises(FeedbackError, match="'source'"):
        make_feedback(message_id="m1", model="sentiment", label="negative", text="x", by="ana", source="blog")


def test_feedback_add_takes_text_and_source_from_the_scored_record() -> None:
    asked: list[set[str]] = []

    def lookup(ids: set[str]) -> dict[str, ScoredMessage]:
        asked.append(ids)
        return {"c1": ScoredMessage(text="bagholding again 📉", source="chat")}

    fb = feedback_for_message(lookup, message_id="c1", model="sentiment", label="Negative", by="ana")
    assert (fb.text, fb.source, fb.label) == ("bagholding again 📉", "chat", "negative") and asked == [{"c1"}]
    # --source wins over the scored record; an unknown message needs --text, and then --source sets it
    assert feedback_for_message(lookup, message_id="c1", model="sentiment", label="neutral", by="ana",
                                source="news").source == "news"
    given = feedback_for_message(lookup, message_id="x9", model="sentiment", label="neutral", by="ana",
                                 text="flat day", source="chat")
    assert (given.text, given.source) == ("flat day", "chat")
    with pytest.raises(FeedbackError, match="--text"):
        feedback_for_message(lookup, message_id="x9", model="sentiment", label="neutral", by="ana")
    with pytest.raises(FeedbackError, match="not one of"):  # the label is checked before the scored topic is read
        feedback_for_message(lambda ids: pytest.fail("looked up"), message_id="c1", model="sentiment",
                             label="bullish", by="ana")


def test_a_reply_to_an_alert_keeps_each_messages_source() -> None:
    alert = {"id": "ticker|TSLA|1", "top_messages": [
        {"message_id": "n1", "text": "TSLA recall", "source": "news"},
        {"message_id": "c2", "text": "puts printing", "source": "chat"}, {"message_id": "o3", "text": "old"}]}
    assert [f.source for f in alert_feedback(alert, "negative", "ana")] == ["news", "chat", None]


def test_chat_rows_are_repeated_by_the_weight_and_news_rows_count_once() -> None:
    base = Split(["Shares fall", "moon soon 🚀", "Revenue flat"], [NEG, POS, NEU])
    records = [_fb("c1", "MOON soon 🚀", "chat"), _fb("n1", "Revenue  flat", "news", "positive"),
               _fb("c2", "puts printing", "chat"), _fb("n2", "Guidance cut", "news"), _fb("u1", "meh", None)]
    extra = as_split(records, "sentiment")
    corrected, new = apply_corrections(base, extra)
    sources = sources_by_text(records, "sentiment")
    weighted = weight_chat_rows(extra, new, sources, weight=3)
    train = list(zip(corrected.texts + weighted.texts, corrected.labels + weighted.labels, strict=True))
    count = {t: sum(1 for x, _ in train if x.lower().split() == t.lower().split()) for t in
             ("moon soon 🚀", "puts printing", "Revenue flat", "Guidance cut", "meh", "Shares fall")}
    assert count == {"moon soon 🚀": 3, "puts printing": 3, "Revenue flat": 1, "Guidance cut": 1, "meh": 1,
                     "Shares fall": 1}
    # every copy carries the analyst's label, the relabelled base row included
    assert {y for x, y in train if x in ("moon soon 🚀", "MOON soon 🚀", "puts printing")} == {NEG}
    assert weight_chat_rows(extra, new, sources, weight=1) == new


def test_the_report_counts_feedback_per_source_and_gives_the_weight(tmp_path: Path) -> None:
    records = [_fb("c1", "puts printing", "chat"), _fb("c2", "held out", "chat"), _fb("n1", "Guidance cut", "news"),
               _fb("u1", "meh", None), make_feedback(message_id="t1", model="topic", label="Earnings", text="EPS",
                                                     by="ana", source="chat")]
    used = Split(["puts printing", "Guidance cut", "meh"], [NEG, NEG, NEG])  # "held out" was in val/test
    summary = feedback_sources(records, used, "sentiment", weight=3)
    assert summary == {"chat_weight": 3, "by_source": {"chat": {"rows": 2, "used": 1}, "news": {"rows": 1, "used": 1},
                                                       "none": {"rows": 1, "used": 1}}}
    fig = {"n": 1, "accuracy": 1.0, "macro_f1": 1.0, "weighted_f1": 1.0, "per_class": []}
    report = {"model": "sentiment", "at": "20260105T120000Z", "mode": "head", "command": "x", "limit": None,
              "data": {"train": 10, "val": 5, "test": 5, "feedback_rows": 4, "feedback_used": 3,
                       "feedback_new_texts": 3, "feedback_relabelled": 0, "feedback_dropped_held_out": 1},
              "feedback": summary, "production": None, "candidate": {"staged": None, **fig},
              "gate": {"reason": "r"}, "decision": "passed", "pushed_version": None, "seconds": 1.0}
    assert ("- feedback by source: chat 2 rows (1 used, each counted 3 times), news 1 (1 used), "
            "no source 1 (1 used)") in markdown(report)
