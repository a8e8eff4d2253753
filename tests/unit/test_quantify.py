"""``tonewatch eval quantify``'s logic on synthetic posteriors: PACC against classify-and-count."""

from __future__ import annotations

import numpy as np
import pytest

from streams.windows.prevalence import Rates, rates_from
from tonewatch.evaluation.quantify import PREVALENCES, Posteriors, quantify, table_lines

# Beta(a, b) of p_negative for (negatives, others); chat is the weaker model. Both label many non-negatives
# negative, so counting is biased at every share from 5% to 60% (it is unbiased only near 80%)
QUALITY = {"news": ((6.0, 2.0), (2.0, 3.0)), "chat": ((5.0, 2.0), (2.0, 2.5))}


def _posteriors(n: int, seed: int) -> Posteriors:
    """Beta-distributed p_negative per source; labels are the argmax stand-in p > 0.5."""
    rng = np.random.default_rng(seed)
    sources = np.array(["news"] * (n * 3 // 4) + ["chat"] * (n - n * 3 // 4))
    truth = rng.random(n) < 0.25
    p = np.empty(n)
    for source, (neg, other) in QUALITY.items():
        for is_neg, (a, b) in ((True, neg), (False, other)):
            rows = (sources == source) & (truth == is_neg)
            p[rows] = rng.beta(a, b, rows.sum())
    return Posteriors(p_negative=p, predicted_negative=p > 0.5, is_negative=truth, sources=sources)


def _rates(val: Posteriors) -> dict[str, Rates]:
    out = {"all": rates_from(val.p_negative, val.is_negative)}
    for source in ("news", "chat"):
        rows = val.sources == source
        out[source] = rates_from(val.p_negative[rows], val.is_negative[rows])
    return out


def test_pacc_beats_classify_and_count_at_every_share_and_source() -> None:
    test, rates = _posteriors(4000, seed=1), _rates(_posteriors(4000, seed=2))
    out = quantify(test, rates, size=200, samples=100, seed=7)
    assert out["shares"] == list(PREVALENCES) and set(out["sources"]) == {"all", "news", "chat"}
    for source, res in out["sources"].items():
        raw = [r["raw_mae"] for r in res["rows"]]
        corrected = [r["pacc_mae"] for r in res["rows"]]
        assert all(c < r for c, r in zip(corrected, raw, strict=True)), (source, raw, corrected)
        assert res["corrected_wins"] is True
    assert out["sources"]["chat"]["rates"] == pytest.approx([rates["chat"].tpr, rates["chat"].fpr])
    assert out["sources"]["all"]["rates"] == "per message, its source's"


def test_quantify_is_deterministic_and_follows_the_seed() -> None:
    test, rates = _posteriors(2000, seed=1), _rates(_posteriors(2000, seed=2))
    a = quantify(test, rates, size=100, samples=20, seed=7)
    assert a == quantify(test, rates, size=100, samples=20, seed=7)
    assert a != quantify(test, rates, size=100, samples=20, seed=8)


def test_without_usable_rates_the_corrected_share_is_the_count() -> None:
    test = _posteriors(1000, seed=1)
    flat = {"all": Rates(0.5, 0.49)}  # tpr - fpr below MIN_GAP: no guide, so nothing is corrected
    res = quantify(test, flat, size=100, samples=10, seed=7)["sources"]["all"]
    assert all(r["raw_mae"] == r["pacc_mae"] for r in res["rows"])


def test_table_has_one_row_per_share_and_a_column_pair_per_source() -> None:
    test, rates = _posteriors(2000, seed=1), _rates(_posteriors(2000, seed=2))
    lines = table_lines(quantify(test, rates, size=100, samples=10, seed=7))
    assert lines[0] == ("| true negative share | all: raw | all: PACC | news: raw | news: PACC | chat: raw "
                        "| chat: PACC |")
    assert [line.split(" | ")[0] for line in lines[2:2 + len(PREVALENCES)]] == [f"| {s:.0%}" for s in PREVALENCES]
    assert lines[2 + len(PREVALENCES)].startswith("| mean")
