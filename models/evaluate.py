"""``tonewatch models evaluate``: figures of a served model (through Triton) or of its exported artifact."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data import SOURCES, Split
from models.head import metrics, per_class
from tonewatch.core.errors import InvalidInput

Predictor = Callable[[list[str]], np.ndarray]
# other datasets' names for our sentiment labels (twitter-financial-news, StockTwits)
ALIASES = {"bearish": "negative", "bullish": "positive"}


class EvalDataError(InvalidInput):
    """A CSV that cannot be evaluated: missing columns, unknown labels."""


def read_labelled_csv(path: Path, text_column: str, label_column: str, labels: list[str]) -> Split:
    """Texts and label indices; a label may be a name (any case, or an alias) or the index itself."""
    index = {lab.lower(): i for i, lab in enumerate(labels)}
    texts: list[str] = []
    ys: list[int] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for col in (text_column, label_column):
            if col not in (reader.fieldnames or []):
                raise EvalDataError(f"{path}: no column '{col}' (columns: {', '.join(reader.fieldnames or [])})")
        for n, row in enumerate(reader, start=2):
            raw = (row[label_column] or "").strip().lower()
            raw = ALIASES.get(raw, raw)
            if raw in index:
                y = index[raw]
            elif raw.isdigit() and int(raw) < len(labels):
                y = int(raw)
            else:
                raise EvalDataError(f"{path}:{n}: label '{row[label_column]}' is not one of {labels}")
            texts.append(row[text_column] or "")
            ys.append(y)
    return Split(texts, ys)


def local_predictor(version_dir: Path, device: str = "cpu") -> Predictor:
    from models.serving import Classifier

    return Classifier(version_dir, device).predict_proba


def triton_predictor(url: str, model: str, version: str = "", batch: int = 64) -> Predictor:
    """Through the running server, exactly as the worker calls it (gRPC, TEXT -> PROBS)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)

    def predict(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch):
            arr = np.array([t.encode("utf-8") for t in texts[i : i + batch]], dtype=object).reshape(-1, 1)
            inp = grpcclient.InferInput("TEXT", list(arr.shape), "BYTES")
            inp.set_data_from_numpy(arr)
            res = client.infer(model, [inp], model_version=version,
                               outputs=[grpcclient.InferRequestedOutput("PROBS")])
            out.append(res.as_numpy("PROBS"))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    return predict


@dataclass(frozen=True)
class Report:
    model: str
    version: str
    data: str
    labels: list[str]
    n: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: list[dict[str, Any]]
    confusion: list[list[int]]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def predict_probs(predict: Predictor, texts: list[str], batch: int = 256) -> np.ndarray:
    return np.concatenate([predict(texts[i : i + batch]) for i in range(0, len(texts), batch)])


def evaluate(predict: Predictor, split: Split, labels: list[str], *, model: str, version: str, data: str,
             batch: int = 256) -> Report:
    return report_from_probs(predict_probs(predict, split.texts, batch), split, labels, model=model,
                             version=version, data=data)


def evaluate_by_source(predict: Predictor, split: Split, sources: list[str], labels: list[str], *, model: str,
                       version: str, data: str) -> dict[str, Report]:
    """``all``, then one report per source of the texts (``sources[i]`` is text i's), from one prediction pass."""
    return reports_by_source(predict_probs(predict, split.texts), split, sources, labels, model=model,
                             version=version, data=data)


def reports_by_source(probs: np.ndarray, split: Split, sources: list[str], labels: list[str], *, model: str,
                      version: str, data: str) -> dict[str, Report]:
    """Like :func:`evaluate_by_source` on probabilities already computed. Sources come in the order
    ``models.data.SOURCES`` lists them (news, then chat), any other after them by name."""
    listed = [s for s, *_ in SOURCES.get(model, ())]
    present = set(sources)
    order = [s for s in listed if s in present] + sorted(present - set(listed))
    out = {"all": report_from_probs(probs, split, labels, model=model, version=version, data=data)}
    for source in order:
        rows = [i for i, s in enumerate(sources) if s == source]
        part = Split([split.texts[i] for i in rows], [split.labels[i] for i in rows])
        out[source] = report_from_probs(probs[rows], part, labels, model=model, version=version,
                                        data=f"{data}: {source}")
    return out


def report_from_probs(probs: np.ndarray, split: Split, labels: list[str], *, model: str, version: str,
                      data: str) -> Report:
    y_true, y_pred = np.array(split.labels, dtype=int), np.asarray(probs).argmax(1)
    n = len(labels)
    m = metrics(y_true, y_pred, n)
    p, r, f1, support = per_class(y_true, y_pred, n)
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    rows = [{"label": lab, "precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
             "f1": round(float(f1[i]), 4), "support": int(support[i])} for i, lab in enumerate(labels)]
    return Report(model, version, data, labels, len(y_true), round(m.accuracy, 4), round(m.macro_f1, 4),
                  round(m.weighted_f1, 4), rows, cm.tolist())


def format_report(r: Report) -> str:
    width = max(len(lab) for lab in r.labels) + 2
    lines = [f"{r.model} v{r.version} on {r.data} ({r.n} texts)",
             f"accuracy {r.accuracy:.4f}  macro-F1 {r.macro_f1:.4f}  weighted-F1 {r.weighted_f1:.4f}", "",
             f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for row in r.per_class:
        lines.append(f"{row['label']:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}"
                     f"{row['support']:>9d}")
    return "\n".join(lines)


def confusion_png(r: Report, path: Path) -> Path:
    """Rows are true labels, columns predictions; cells show counts, colour shows the row share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(r.confusion, dtype=float)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 2.5 + 0.45 * len(r.labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(r.labels)), r.labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(r.labels)), r.labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(r.labels)):
        for j in range(len(r.labels)):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_title(f"{r.model} v{r.version}: {r.data}\naccuracy {r.accuracy:.3f}, weighted-F1 {r.weighted_f1:.3f}",
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
