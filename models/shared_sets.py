"""Third-party labelled sets read in place from ``../shared/data``: never copied into the repository.

Evaluation on data a version never trained on (``tonewatch models report``) and, opt-in, extra training
rows for experiments (``--train-with KEY``); a version trained on one is never served
(docs/decisions/2026-12-07-shared-sets-experiment-only.md).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from models.data import Split, norm_text
from models.evaluate import EvalDataError, read_labelled_csv
from tonewatch.core.errors import InvalidInput

SHARED_DIR = Path("../shared/data")  # beside the checkout, as the project's machines have it


@dataclass(frozen=True)
class SharedSet:
    key: str  # what --train-with and manifests call it
    model: str
    title: str
    path: str  # relative to the shared data folder
    text_column: str
    label_column: str
    licence: str
    min_agreement: int | None = None


SHARED_SETS = (
    SharedSet("phrasebank", "sentiment", "Financial PhraseBank (all agreement levels)", "financial_phrasebank/data.csv",
              "text", "label", "CC BY-NC-SA 3.0 (non-commercial)"),
    SharedSet("phrasebank100", "sentiment", "Financial PhraseBank (100% agreement)", "financial_phrasebank/data.csv",
              "text", "label", "CC BY-NC-SA 3.0 (non-commercial)", min_agreement=100),
    # two classes (bullish/bearish as positive/negative): as evaluation data a 'neutral' prediction is an error
    SharedSet("stockemotions", "sentiment", "StockEmotions StockTwits (bullish/bearish only)",
              "stockemotions/data.csv", "original", "senti_label", "none stated (research use)"),
)


class SharedDataError(InvalidInput):
    """A shared set that was asked for but cannot be used: unknown key, wrong model, file absent."""


def by_key(key: str, model: str) -> SharedSet:
    known = [s.key for s in SHARED_SETS if s.model == model]
    for s in SHARED_SETS:
        if s.key == key and s.model == model:
            return s
    raise SharedDataError(f"no shared set '{key}' for {model} (known: {', '.join(known) or 'none'})")


def read_set(data_dir: Path, s: SharedSet, labels: list[str]) -> Split | None:
    """The set's texts and label indices, or None when its file is not there (a fresh checkout)."""
    path = data_dir / s.path
    if not path.is_file():
        return None
    split = read_labelled_csv(path, s.text_column, s.label_column, labels)
    if s.min_agreement is None:
        return split
    with path.open(encoding="utf-8", newline="") as fh:
        keep = [int(r.get("agreement") or 0) >= s.min_agreement for r in csv.DictReader(fh)]
    return Split([t for t, k in zip(split.texts, keep, strict=True) if k],
                 [y for y, k in zip(split.labels, keep, strict=True) if k])


def training_rows(data_dir: Path, keys: tuple[str, ...], model: str, labels: list[str],
                  exclude: list[Split]) -> tuple[Split, list[str]]:
    """Rows of the asked sets, minus any text already in ``exclude`` (train: a duplicate; val/test: a leak).

    Returns the rows and one line per set for the manifest (rows used, licence). Asking for a set that is
    absent is an error, not a silent no-op: the run would otherwise not be the experiment it claims.
    """
    seen = {norm_text(t) for part in exclude for t in part.texts}
    texts: list[str] = []
    ys: list[int] = []
    lines: list[str] = []
    for key in dict.fromkeys(keys):
        s = by_key(key, model)
        try:
            split = read_set(data_dir, s, labels)
        except EvalDataError as exc:
            raise SharedDataError(str(exc)) from exc
        if split is None:
            raise SharedDataError(f"{data_dir / s.path} is not there: --train-with {key} needs the shared data")
        used = 0
        for text, y in zip(split.texts, split.labels, strict=True):
            k = norm_text(text)
            if k and k not in seen:
                seen.add(k)
                texts.append(text)
                ys.append(y)
                used += 1
        lines.append(f"{key}: {used} rows, licence {s.licence}")
    return Split(texts, ys), lines
