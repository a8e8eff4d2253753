"""Training data from the committed MIT sets: deduplicated, split deterministically and stratified."""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from models.labels import LABELS

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: list[int]


@dataclass(frozen=True)
class Dataset:
    name: str
    labels: list[str]
    train: Split
    val: Split
    test: Split


def _read(path: Path, text_col: str, label_col: str) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [(r[text_col], r[label_col].strip().lower()) for r in csv.DictReader(fh)]


# per model, in reading order: (source, file, text column, label column); the source is what the stream's
# messages carry too ("news" or "chat"), so the PACC rates can be measured per source
SOURCES = {
    "sentiment": (("news", "news_sentiment.csv", "text", "sentiment"),
                  ("chat", "chat_sentiment.csv", "text", "sentiment")),  # chat: the Surge set, MIT
    "topic": (("news", "news_topic.csv", "text", "label_name"),),
}


def _by_source(name: str, data_dir: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    if name not in SOURCES:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(LABELS)})")
    return [(source, _read(data_dir / file, text, label)) for source, file, text, label in SOURCES[name]]


def raw_examples(name: str, data_dir: Path = DATA_DIR) -> list[tuple[str, str]]:
    """(text, label name) pairs for one model, from every committed source it learns from."""
    return [row for _, rows in _by_source(name, data_dir) for row in rows]


def example_sources(name: str, data_dir: Path = DATA_DIR) -> dict[str, str]:
    """The source of every text ``split`` keeps, by ``norm_text``: like its dedup, the first occurrence wins."""
    out: dict[str, str] = {}
    for source, rows in _by_source(name, data_dir):
        for text, _ in rows:
            out.setdefault(norm_text(text), source)
    return out


def text_sources(name: str, texts: list[str], data_dir: Path = DATA_DIR) -> list[str]:
    """The source of each committed text (``SOURCES``); a text that is not committed is 'other'."""
    known = example_sources(name, data_dir)
    return [known.get(norm_text(t), "other") for t in texts]


def norm_text(text: str) -> str:
    """The identity of a text for dedup: case and spacing do not make a new example."""
    return " ".join(text.lower().split())


def split(
    examples: list[tuple[str, str]], labels: list[str], seed: int = 7, fractions: tuple[float, float] = (0.8, 0.1)
) -> tuple[Split, Split, Split]:
    """Stratified train/val/test; near-duplicate texts (case, spacing) are kept once, so none straddles splits."""
    index = {lab.lower(): i for i, lab in enumerate(labels)}
    seen: set[str] = set()
    by_label: dict[int, list[str]] = defaultdict(list)
    for text, name in examples:
        key = norm_text(text)
        if not key or key in seen:
            continue
        if name not in index:
            raise ValueError(f"label '{name}' is not one of {labels}")
        seen.add(key)
        by_label[index[name]].append(text)
    rng = random.Random(seed)
    parts: tuple[list[tuple[str, int]], ...] = ([], [], [])
    for lab in sorted(by_label):
        texts = sorted(by_label[lab])
        rng.shuffle(texts)
        n_train = round(len(texts) * fractions[0])
        n_val = round(len(texts) * fractions[1])
        for j, text in enumerate(texts):
            which = 0 if j < n_train else 1 if j < n_train + n_val else 2
            parts[which].append((text, lab))
    for part in parts:
        rng.shuffle(part)
    return tuple(Split([t for t, _ in p], [y for _, y in p]) for p in parts)  # type: ignore[return-value]


def apply_corrections(base: Split, extra: Split) -> tuple[Split, Split]:
    """(base with corrected labels, rows new to it): a correction of a known text relabels it in place.

    Keeps ``base.texts`` unchanged, so its cached embeddings still apply; the last correction wins.
    """
    where = {norm_text(t): i for i, t in enumerate(base.texts)}
    labels = list(base.labels)
    new: dict[str, tuple[str, int]] = {}
    for text, y in zip(extra.texts, extra.labels, strict=True):
        key = norm_text(text)
        if key in where:
            labels[where[key]] = y
        else:
            new[key] = (text, y)
    return Split(base.texts, labels), Split([t for t, _ in new.values()], [y for _, y in new.values()])


def load_dataset(name: str, data_dir: Path = DATA_DIR, seed: int = 7) -> Dataset:
    labels = LABELS[name]
    train, val, test = split(raw_examples(name, data_dir), labels, seed)
    return Dataset(name, labels, train, val, test)
