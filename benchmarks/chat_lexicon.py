"""Issue #29 item 3: does the chat-lexicon blend help sentiment read chat, at what cost to news?

Fits the blend's three weights on the committed validation split (NLL of the served, temperature-scaled
probabilities; ``models.calibration.fit_lexicon``) and prints test figures per source and StockEmotions
(evaluation only) before and after. The version's own manifest is only read.

    .venv/bin/python benchmarks/chat_lexicon.py [--version-dir triton_repo/sentiment/1] [--cache probs.npz]

``--cache`` keeps the raw probabilities (one ONNX pass over val, test and StockEmotions, minutes on CPU) so a
lexicon change is re-measured in seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.artifact import read_manifest, temperature
from models.calibration import apply_temperature
from models.data import Split, load_dataset, text_sources
from models.domains import figures
from models.evaluate import report_from_probs
from models.lexicon import VERSION, apply_lexicon, counts, lexicon_record
from models.shared_sets import SHARED_DIR, by_key, read_set

COLUMNS = ("n", "weighted_f1", "macro_f1", "negative_precision", "negative_recall")


def raw_probs(version_dir: Path, cache: Path | None) -> dict[str, np.ndarray]:
    """Uncalibrated probabilities and labels of val, test and StockEmotions, from ``cache`` when it exists."""
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            return {k: data[k] for k in data.files}
    from models.serving import Classifier
    from models.train import predict_all

    clf = Classifier(version_dir, "cpu", threads=1, calibrated=False)
    ds = load_dataset("sentiment")
    se = read_set(SHARED_DIR, by_key("stockemotions", "sentiment"), ds.labels)
    out: dict[str, np.ndarray] = {}
    for key, part in (("val", ds.val), ("test", ds.test), ("se", se)):
        if part is not None:
            out[f"{key}_probs"], out[f"{key}_labels"] = predict_all(clf, part.texts), np.array(part.labels)
    if cache is not None:
        np.savez(cache, **out)
    return out


def rows(probs: np.ndarray, parts: dict[str, Split], sources: list[str], labels: list[str]) -> dict[str, dict]:
    """Figures per row of the table: test all / news / chat, then StockEmotions; ``probs`` in that order."""
    out, start = {}, 0
    for name, part in parts.items():
        p = probs[start : start + len(part.texts)]
        start += len(part.texts)
        if name == "test":
            for source in ("all", "news", "chat"):
                keep = [i for i, s in enumerate(sources) if source in ("all", s)]
                sub = Split([part.texts[i] for i in keep], [part.labels[i] for i in keep])
                out[f"test {source}"] = figures(report_from_probs(p[keep], sub, labels, model="sentiment",
                                                                  version="", data=source))
        else:
            out[name] = figures(report_from_probs(p, part, labels, model="sentiment", version="", data=name))
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version-dir", type=Path, default=Path("triton_repo/sentiment/1"))
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--fit-on", choices=("all", "chat"), default="all",
                    help="val rows the weights are fitted on: all (what serving would store) or chat only (what-if)")
    args = ap.parse_args(argv)
    manifest = read_manifest(args.version_dir)
    labels, t = manifest.labels, temperature(manifest) or 1.0
    ds = load_dataset("sentiment")
    se = read_set(SHARED_DIR, by_key("stockemotions", "sentiment"), labels)
    raw = raw_probs(args.version_dir, args.cache)
    served = {k: apply_temperature(raw[f"{k}_probs"].astype(np.float64), t) for k in ("val", "test", "se")}
    keep = np.array([args.fit_on in ("all", s) for s in text_sources("sentiment", ds.val.texts)])
    record = lexicon_record(served["val"][keep], raw["val_labels"][keep], counts(ds.val.texts)[keep], labels,
                            VERSION)
    parts = {"test": ds.test, **({"StockEmotions": se} if se is not None else {})}
    texts = [t for part in parts.values() for t in part.texts]
    before = np.concatenate([served["test"], served["se"]][: len(parts)])
    after = apply_lexicon(before, counts(texts), list(record["weights"].values()), labels)
    sources = text_sources("sentiment", ds.test.texts)
    table = {"before": rows(before, parts, sources, labels), "after": rows(after, parts, sources, labels)}
    print(f"lexicon {VERSION}, temperature {t}; fitted on val ({args.fit_on}, {keep.sum()} texts): {record}\n")
    print("| data | " + " | ".join(f"{c} before | {c} after" for c in COLUMNS[1:]) + " | n |")
    print("|---|" + "---|" * (2 * len(COLUMNS) - 1))
    for name, b in table["before"].items():
        a = table["after"][name]
        cells = " | ".join(f"{b[c]:.3f} | {a[c]:.3f}" for c in COLUMNS[1:])
        print(f"| {name} | {cells} | {b['n']:,} |")
    return {"record": record, **table}


if __name__ == "__main__":
    main()
