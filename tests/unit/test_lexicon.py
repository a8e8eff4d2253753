"""The finance-chat lexicon and its blend on served probabilities (issue #29 item 3; measured, not served)."""

from __future__ import annotations

import numpy as np
import pytest

from models.lexicon import BEAR, BULL, apply_lexicon, counts, fit_lexicon, hits, lexicon_record

LABELS = ["negative", "neutral", "positive"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_counts_bearish_and_bullish_terms_case_and_emoji() -> None:
    got = counts(["Loading PUTS on $TSLA, total bagholder 🐻📉", "$GME to the MOON 🚀🚀 diamond hands 💎🙌🏼",
                  "Fed holds rates steady", ""])
    np.testing.assert_array_equal(got, [[4, 0], [0, 5], [0, 0], [0, 0]])
    assert got.shape == (4, 2) and counts([]).shape == (0, 2)


def test_longest_match_wins_and_hyphenated_words_stay_whole() -> None:
    assert hits("short squeeze today") == [("short squeeze", BULL)]  # not "short" (bear) + "squeeze" (bull)
    assert hits("bag holder again") == [("bag holder", BEAR)]
    assert hits("Short-term notes and long-term debt") == []  # news wording, not a short position
    assert hits("$SHORT and $MOON are tickers") == []


def test_negation_flips_a_word_term_but_not_an_emoji() -> None:
    assert hits("not bullish at all") == [("bullish", BEAR)]
    assert hits("it won't crash") == [("crash", BULL)]
    assert hits("I don't think it will crash") == [("crash", BEAR)]  # beyond NEGATION_REACH: no guess
    assert hits("not 🚀") == [("🚀", BULL)]
    assert hits("not today, bullish") == [("bullish", BULL)]  # the negator is 3 tokens back: kept


def test_zero_hits_leave_probabilities_and_labels_as_they_are() -> None:
    rng = np.random.default_rng(3)
    probs = _softmax(rng.normal(0, 2, size=(50, 3))).astype(np.float32)
    texts = ["Company reports quarterly revenue of $2.1bn"] * 50  # news-like: no lexicon term
    out = apply_lexicon(probs, counts(texts), [2.0, 1.5, 1.0], LABELS)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, probs, atol=1e-6)
    assert (out.argmax(1) == probs.argmax(1)).all()


def test_hits_move_probability_towards_their_side_and_rows_sum_to_one() -> None:
    probs = np.full((2, 3), 1 / 3)
    out = apply_lexicon(probs, np.array([[2.0, 0.0], [0.0, 1.0]]), [1.0, 1.0, 0.5], LABELS)
    assert out[0].argmax() == 0 and out[1].argmax() == 2
    np.testing.assert_allclose(out.sum(1), 1.0)


def test_fit_recovers_known_weights_on_synthetic_data() -> None:
    rng = np.random.default_rng(0)
    n, true = 20_000, [1.2, 0.7, 0.4]
    probs = _softmax(rng.normal(0, 1.5, size=(n, 3)))
    lex = rng.poisson(0.6, size=(n, 2)).astype(float)
    truth = apply_lexicon(probs, lex, true, LABELS)
    labels = np.array([rng.choice(3, p=p) for p in truth])
    assert fit_lexicon(probs, labels, lex, LABELS) == pytest.approx(true, abs=0.12)


def test_a_lexicon_without_signal_fits_to_the_identity() -> None:
    rng = np.random.default_rng(1)
    probs = _softmax(rng.normal(0, 1.5, size=(5_000, 3)))
    labels = np.array([rng.choice(3, p=p) for p in probs])  # labels ignore the hits entirely
    lex = rng.poisson(0.6, size=(5_000, 2)).astype(float)
    record = lexicon_record(probs, labels, lex, LABELS, "test")
    assert all(w < 0.1 for w in record["weights"].values())
    assert record["fit_split"] == "val" and record["nll_val_after"] <= record["nll_val_before"]
