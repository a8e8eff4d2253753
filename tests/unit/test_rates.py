"""The score stage's error rates per sentiment version and source, and the corrected sums they give."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from streams.score.rates import RatesBook
from streams.windows.prevalence import Rates, adjusted, corrected_share, pacc, rates_from
from streams.windows.trends import Combiner
from tests.unit.test_fold import _scored

NEWS, ALL = Rates(0.8, 0.1), Rates(0.6, 0.1)


class Loader:
    def __init__(self, table: dict[str, Rates] | None = None, fail: bool = False) -> None:
        self.table, self.fail, self.calls = table, fail, []  # type: ignore[var-annotated]

    def __call__(self, folder: Path) -> dict[str, Rates] | None:
        self.calls.append(folder)
        if self.fail:
            raise OSError("manifest unreadable")
        return self.table


def test_rates_per_source_fall_back_to_all_and_load_once_per_version() -> None:
    load = Loader({"news": NEWS, "all": ALL})
    book = RatesBook(Path("/repo"), "sentiment", load)
    assert book.rates("1", "news") == NEWS and book.rates("1", "chat") == ALL and book.rates("1", "news") == NEWS
    assert load.calls == [Path("/repo/sentiment/1")]


@pytest.mark.parametrize("version", [None, "../../etc", "1/.."])
def test_a_version_that_is_no_number_is_never_a_path(version: str | None) -> None:
    load = Loader({"all": ALL})
    assert RatesBook(Path("/repo"), "sentiment", load).rates(version, "news") is None and load.calls == []


def test_without_rates_a_message_counts_its_label() -> None:
    for book in (RatesBook(Path("/r"), "sentiment", Loader(fail=True)), RatesBook(Path("/r"), "sentiment", Loader()),
                 RatesBook(Path("/r"), "sentiment", None)):
        for s in _scored(3, 20):
            assert book.adjusted(s) == (1.0 if s.sentiment == "negative" else 0.0)


def test_combiner_sums_each_message_adjusted_with_its_own_version_rates() -> None:
    scored = _scored(4, 400)  # versions 1 and 2
    book = RatesBook(Path("/r"), "sentiment", lambda folder: {"all": ALL} if folder.name == "1" else {"all": NEWS})
    combiner = Combiner(60, 5, adjust=book.adjusted)
    for s in sorted(scored, key=lambda s: s.ts):
        combiner.add(s)
    partial = combiner.partials()["source|news"]
    want = sum(adjusted(s.p_negative, False, ALL if s.model_versions["sentiment"] == "1" else NEWS) for s in scored)
    assert math.isclose(sum(p.adjusted_sum or 0.0 for p in partial), want)
    plain = Combiner(60, 5)
    for s in scored:
        plain.add(s)
    assert all(p.adjusted_sum == p.negative for p in plain.partials()["source|news"])


def test_pacc_inverts_the_model_average_and_clips() -> None:
    rates = rates_from([0.9, 0.7, 0.2, 0.1, 0.1, 0.0], [True, True, False, False, False, False])
    assert math.isclose(rates.tpr, 0.8) and math.isclose(rates.fpr, 0.1)
    # a sample with 50 % true negatives averages 0.45 under these rates: corrected back to 0.5
    assert math.isclose(pacc([0.45] * 10, rates), 0.5)
    assert corrected_share(-3.0, 10) == 0.0 and corrected_share(30.0, 10) == 1.0 and corrected_share(1.0, 0) == 0.0
    assert not Rates(0.3, 0.28).usable and adjusted(0.9, False, Rates(0.3, 0.28)) == 0.0  # rates no guide: label
    assert not rates_from([0.5], [True]).usable
