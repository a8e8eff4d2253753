"""A finance-chat lexicon: the slang and emoji that carry a chat message's sentiment (issue #29 item 3).

Written for this project from what traders write on StockTwits and Reddit, not copied from a published list.
``counts(texts)`` gives each text's bearish and bullish hits; ``apply_lexicon`` blends them into served
(temperature-scaled) probabilities with three weights fitted on validation. Measured by
benchmarks/chat_lexicon.py and not served: it did not pass issue #29's rule (docs/models.md).
Terms were chosen to be rare in news headlines (no "bear", "put", "long" alone: news uses them otherwise),
and hyphenated words stay whole, so "short-term" is not "short".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from models.calibration import EPS, nll

BEAR, BULL = 0, 1
VERSION = "chat-1"  # stored beside the fitted weights: a changed lexicon needs them fitted again

_BEAR_WORDS = """bearish puts shorting shorted shorts short dump dumping dumped dumps bagholder bagholders
bagholding rugpull rugged crash crashing crashed tank tanking tanked drilling drilled drill red bleeding
bleed rekt puke puking capitulation overvalued bubble scam ponzi fraud worthless bankrupt bankruptcy delisted
delisting dead trash garbage dumpster"""
_BULL_WORDS = """bullish moon mooning moonshot rocket squeeze squeezing tendies lambo btfd breakout
ripping rally rallying soar soaring undervalued ath green loaded
hodl hodling printing yolo"""
_BEAR_PHRASES = ["bag holder", "bag holders", "rug pull", "rug pulled", "going to zero", "to zero",
                 "stop loss hit", "buying puts", "bought puts", "loaded puts", "short it", "short this"]
_BULL_PHRASES = ["short squeeze", "gamma squeeze", "diamond hands", "to the moon", "buy the dip", "bought the dip",
                 "going long", "go long", "went long", "stay long", "still long", "long calls", "buying calls",
                 "bought calls", "loaded calls", "all time high",
                 "break out", "lift off", "let's go", "lets go", "💎🙌", "💎 🙌", "💎✋"]
_BEAR_EMOJI = "🐻📉🩸💀🔻😱😭💩⚰🆘🤮👎🔴🥀"
_BULL_EMOJI = "🚀📈🌕🌙🐂🤑💰💵💪🔥✅🟢👍🙌🤩🏎"
_NEGATORS = {"not", "no", "never", "nobody", "nothing", "isn't", "isnt", "aint", "ain't", "don't", "dont", "won't",
             "wont", "can't", "cant", "wasn't", "wasnt", "didn't", "didnt", "stop", "without"}
NEGATION_REACH = 2  # a word term right after a negator (or one word later) counts for the other side

# emoji presentation, modifiers and joiners carry no sentiment of their own: dropped before matching
_DROP = re.compile("[\ufe0e\ufe0f\u200d\U0001f3fb-\U0001f3ff]")
_TOKEN = re.compile(r"\$[a-z][a-z.]*|[a-z0-9]+(?:['\-][a-z0-9]+)*|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Lower-case words (hyphenated ones whole), $tickers, and every other symbol (emoji) alone."""
    return _TOKEN.findall(_DROP.sub("", text.lower().replace("\u2019", "'")))


def _table() -> tuple[dict[tuple[str, ...], int], int]:
    table: dict[tuple[str, ...], int] = {}
    for side, words, phrases, emoji in ((BEAR, _BEAR_WORDS, _BEAR_PHRASES, _BEAR_EMOJI),
                                        (BULL, _BULL_WORDS, _BULL_PHRASES, _BULL_EMOJI)):
        for term in [*words.split(), *phrases, *emoji]:
            table[tuple(tokens(term))] = side
    return table, max(len(k) for k in table)


TERMS, _LONGEST = _table()


def _negated(toks: list[str], start: int) -> bool:
    return any(t in _NEGATORS or t.endswith("n't") for t in toks[max(0, start - NEGATION_REACH) : start])


def hits(text: str) -> list[tuple[str, int]]:
    """The terms found in ``text`` and the side each counts for, longest match first ("short squeeze" is
    bullish, not "short" + "squeeze"); a negated word term ("not bullish") counts for the other side."""
    toks, found, i = tokens(text), [], 0
    while i < len(toks):
        for width in range(min(_LONGEST, len(toks) - i), 0, -1):
            key = tuple(toks[i : i + width])
            side = TERMS.get(key)
            if side is not None:
                if key[0][0].isalnum() and _negated(toks, i):
                    side = 1 - side
                found.append((" ".join(key), side))
                i += width
                break
        else:
            i += 1
    return found


def counts(texts: Iterable[str]) -> np.ndarray:
    """(n, 2) float array: each text's bearish and bullish hits (columns ``BEAR``, ``BULL``)."""
    rows: list[list[float]] = []
    for text in texts:
        row = [0.0, 0.0]
        for _, side in hits(text):
            row[side] += 1.0
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


# The chat-lexicon blend (issue #29 item 3): after the temperature, each class's log-probability moves by
# a weight times log1p(lexicon hits), then rows renormalise. Zero hits leave a row exactly as it was.
LEXICON_WEIGHTS = ("bear", "bull", "opinion")  # bear -> negative, bull -> positive, any hit -> away from neutral
LEXICON_BOUNDS = (0.0, 5.0)  # a term may only push towards its own side: a negative weight would be over-fit


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))


def _lexicon_shift(hits: np.ndarray, weights: Sequence[float] | np.ndarray, labels: Sequence[str]) -> np.ndarray:
    bear, bull = np.log1p(np.asarray(hits, dtype=np.float64)).T
    shift = np.zeros((len(bear), len(labels)))
    index = {lab: i for i, lab in enumerate(labels)}
    shift[:, index["negative"]] += weights[0] * bear
    shift[:, index["positive"]] += weights[1] * bull
    shift[:, index["neutral"]] -= weights[2] * (bear + bull)
    return shift


def _blend_log(log_q: np.ndarray, hits: np.ndarray, weights: Sequence[float] | np.ndarray,
               labels: Sequence[str]) -> np.ndarray:
    z = log_q + _lexicon_shift(hits, weights, labels)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def apply_lexicon(probs: np.ndarray, hits: np.ndarray, weights: Sequence[float], labels: Sequence[str]) -> np.ndarray:
    """Served probabilities after the blend; ``hits`` is :func:`counts` of the same texts."""
    out = np.exp(_blend_log(_log(probs), hits, weights, labels))
    return out.astype(probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64)


def fit_lexicon(probs: np.ndarray, labels: np.ndarray, hits: np.ndarray, names: Sequence[str]) -> list[float]:
    """The weights (bear, bull, opinion) that minimise the NLL of ``labels`` under the blend of ``probs``
    (already temperature-scaled); L-BFGS-B within ``LEXICON_BOUNDS``, from zero (the identity)."""
    from scipy.optimize import minimize

    log_q, y = _log(probs), np.asarray(labels)
    rows = np.arange(len(y))

    def loss(w: np.ndarray) -> float:
        return float(-_blend_log(log_q, hits, w, names)[rows, y].mean())

    res = minimize(loss, np.zeros(len(LEXICON_WEIGHTS)), method="L-BFGS-B",
                   bounds=[LEXICON_BOUNDS] * len(LEXICON_WEIGHTS))
    return [float(w) for w in res.x]


def lexicon_record(probs: np.ndarray, labels: np.ndarray, hits: np.ndarray, names: Sequence[str],
                   version: str) -> dict[str, Any]:
    """The weights fitted on val (served, temperature-scaled probabilities) and the val NLL before and after,
    as a manifest's ``calibration["lexicon"]`` would keep them; ``version`` names the lexicon fitted for."""
    weights = fit_lexicon(probs, labels, hits, names)
    after = apply_lexicon(np.asarray(probs, dtype=np.float64), hits, weights, names)
    return {"version": version, "weights": dict(zip(LEXICON_WEIGHTS, (round(w, 4) for w in weights), strict=True)),
            "fit_split": "val", "fit": "nll", "texts_with_hits": int((np.asarray(hits).sum(1) > 0).sum()),
            "nll_val_before": round(nll(probs, labels), 4), "nll_val_after": round(nll(after, labels), 4)}
