"""``tonewatch eval quantify``: is PACC's negative share closer to the truth than counting labels?

Samples of held-out test messages are drawn at known true negative shares (5% to 60%) by resampling the
split's negative and other rows with replacement, the same draw per share for both estimators. Per share it
reports the mean absolute error of the raw share (the model's negative labels counted, as windows do today)
and of the PACC share with the version's stored rates, each message adjusted with its source's rates exactly
as the worker does (``streams.windows.prevalence.adjusted``). Same seed, same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streams.windows.prevalence import Rates, adjusted, corrected_share

PREVALENCES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
ALL = "all"


@dataclass(frozen=True)
class Posteriors:
    """One row per held-out message: calibrated p_negative, the served label, the truth and its source."""

    p_negative: np.ndarray
    predicted_negative: np.ndarray
    is_negative: np.ndarray
    sources: np.ndarray


def _adjusted(post: Posteriors, rates: dict[str, Rates]) -> np.ndarray:
    """Each message's contribution to a corrected sum: its source's rates, else the rates of all."""
    return np.array([adjusted(float(p), bool(label), rates.get(str(src), rates.get(ALL)))
                     for p, label, src in zip(post.p_negative, post.predicted_negative, post.sources, strict=True)])


def _errors(rows: np.ndarray, post: Posteriors, contrib: np.ndarray, share: float, size: int, samples: int,
            rng: np.random.Generator) -> tuple[float, float]:
    """(raw MAE, PACC MAE) over ``samples`` draws of ``size`` messages at a true negative share of ``share``."""
    neg, other = rows[post.is_negative[rows]], rows[~post.is_negative[rows]]
    k = round(share * size)
    truth = k / size
    raw, pacc = [], []
    for _ in range(samples):
        idx = np.concatenate([rng.choice(neg, k, replace=True), rng.choice(other, size - k, replace=True)])
        raw.append(abs(float(post.predicted_negative[idx].mean()) - truth))
        pacc.append(abs(corrected_share(float(contrib[idx].sum()), size) - truth))
    return float(np.mean(raw)), float(np.mean(pacc))


def quantify(post: Posteriors, rates: dict[str, Rates], *, size: int = 200, samples: int = 100, seed: int = 7,
             shares: tuple[float, ...] = PREVALENCES) -> dict[str, Any]:
    """MAE of the raw and the corrected share per true share, over all messages and per source."""
    contrib = _adjusted(post, rates)
    groups = [ALL, *sorted(set(post.sources.tolist()), key=lambda s: (s != "news", s))]
    out: dict[str, Any] = {"split": "test", "size": size, "samples": samples, "seed": seed, "shares": list(shares),
                           "sources": {}}
    for g, source in enumerate(groups):
        rows = np.flatnonzero(post.sources == source) if source != ALL else np.arange(len(post.is_negative))
        if not post.is_negative[rows].any() or post.is_negative[rows].all():
            continue  # nothing to resample one side from
        rng = np.random.default_rng([seed, g])  # one stream per group: adding a source changes no other's figures
        table = []
        for share in shares:
            raw, pacc = _errors(rows, post, contrib, share, size, samples, rng)
            table.append({"share": share, "raw_mae": round(raw, 4), "pacc_mae": round(pacc, 4)})
        r = rates.get(source, rates.get(ALL))
        out["sources"][source] = {
            "messages": len(rows), "negatives": int(post.is_negative[rows].sum()),
            "rates": "per message, its source's" if source == ALL else ([r.tpr, r.fpr] if r else None),
            "rows": table, "corrected_wins": all(t["pacc_mae"] < t["raw_mae"] for t in table),
        }
    return out


def table_lines(summary: dict[str, Any]) -> list[str]:
    """The markdown table: MAE of the raw and the PACC share per true share, a column pair per source."""
    sources = summary["sources"]
    head = "| true negative share | " + " | ".join(f"{s}: raw | {s}: PACC" for s in sources) + " |"
    lines = [head, "|---|" + "---|---|" * len(sources)]
    for i, share in enumerate(summary["shares"]):
        cells = [f"{res['rows'][i]['raw_mae']:.3f} | {res['rows'][i]['pacc_mae']:.3f}" for res in sources.values()]
        lines.append(f"| {share:.0%} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([r['raw_mae'] for r in res['rows']]):.3f} | "
             f"{np.mean([r['pacc_mae'] for r in res['rows']]):.3f}" for res in sources.values()]
    lines.append("| mean | " + " | ".join(means) + " |")
    notes = [f"{s}: {res['messages']} test messages ({res['negatives']} negative), rates "
             + (res["rates"] if isinstance(res["rates"], str) else
                f"tpr {res['rates'][0]:.3f} / fpr {res['rates'][1]:.3f}" if res["rates"] else "none")
             + ("" if res["corrected_wins"] else "; PACC not lower at every share")
             for s, res in sources.items()]
    return [*lines, "", f"Mean absolute error over {summary['samples']} samples of {summary['size']} messages "
            f"per share ({summary['split']} split, seed {summary['seed']}).", *(f"- {n}" for n in notes)]


def load_posteriors(version_dir: Path, device: str = "cpu") -> tuple[Posteriors, dict[str, Rates]]:
    """The version's served (calibrated) predictions on its test split, and its stored rates."""
    from models.artifact import ArtifactError, prevalence_rates, read_manifest
    from models.data import load_dataset, text_sources
    from models.serving import Classifier
    from models.train import predict_all

    manifest = read_manifest(version_dir)
    rates = prevalence_rates(version_dir)
    if rates is None or "negative" not in manifest.labels:
        raise ArtifactError(f"{version_dir}: no PACC rates in its manifest (run `tonewatch models bootstrap` on a "
                            "version 1, or train a new version)")
    ds = load_dataset(manifest.name)
    probs = predict_all(Classifier(version_dir, device), ds.test.texts)
    neg = manifest.labels.index("negative")
    post = Posteriors(p_negative=probs[:, neg].astype(np.float64), predicted_negative=probs.argmax(1) == neg,
                      is_negative=np.array(ds.test.labels) == neg,
                      sources=np.array(text_sources(manifest.name, ds.test.texts)))
    return post, rates
