"""Figures per source of the texts (news headlines, chat messages) wherever a sentiment version is judged.

Chat is half of the stream but a small share of the test split (60 of 1,056 texts), so a figure over all
texts cannot show a version reading chat worse (issue #29). A version's manifest keeps these figures
(``domains``), its model card shows them, ``models evaluate`` and ``models report`` print them and the
retrain gate compares chat (``models.retrain.domain_gate``).
"""

from __future__ import annotations

from typing import Any

from models.evaluate import Report

FOCUS = "negative"  # the class alerts count: its precision and recall are kept per source


def figures(report: Report) -> dict[str, Any]:
    """One source's row: n, accuracy, macro/weighted F1, and the negative class's precision, recall, support."""
    neg = next(row for row in report.per_class if row["label"] == FOCUS)
    return {"n": report.n, "accuracy": report.accuracy, "macro_f1": report.macro_f1,
            "weighted_f1": report.weighted_f1, "negative_precision": neg["precision"],
            "negative_recall": neg["recall"], "negatives": neg["support"]}


def domain_record(reports: dict[str, Report], split: str = "test") -> dict[str, Any] | None:
    """The manifest's ``domains`` from :func:`models.evaluate.reports_by_source`; None for a model without a
    negative class (topic), whose texts are all news anyway."""
    first = next(iter(reports.values()), None)
    if first is None or FOCUS not in first.labels:
        return None
    return {"split": split, "focus": FOCUS, "figures": {source: figures(r) for source, r in reports.items()}}
