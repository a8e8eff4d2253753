"""``tonewatch models train``: one new numbered version per run, tested as exported.

The test figures recorded in the manifest come from loading the written version back through the
same :class:`models.serving.Classifier` that Triton's model.py uses, so they describe what is served.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.artifact import (
    CARD,
    ENCODER_DIR,
    MANIFEST,
    Manifest,
    artifact_dir,
    model_card,
    next_version,
    now_iso,
    read_manifest,
    version_numbers,
    write_version,
)
from models.calibration import apply_temperature, calibration_record, source_rates
from models.data import Dataset, Split, apply_corrections, load_dataset, norm_text, text_sources
from models.domains import domain_record
from models.encoder import ENCODER_PACKAGE, embed, encoder_path
from models.evaluate import predict_probs, reports_by_source
from models.finetune import FinetuneConfig, finetune
from models.head import metrics, train_head
from models.onnx_export import export_onnx
from models.serving import Classifier
from models.shared_sets import SHARED_DIR, training_rows
from streams.control.drift import reference_from_probs
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
HEAD_MAX_LENGTH = 128
ONNX_CHECK_TEXTS = 1000  # validation texts the ONNX graphs are checked on (fp32 vs torch, int8 vs fp32)


def _limit(part: Split, n: int | None) -> Split:
    return part if n is None else Split(part.texts[:n], part.labels[:n])


def _head_only(
    settings: Settings, ds: Dataset, hidden: int, new: Split | None = None
) -> tuple[dict[str, object], dict[str, float], dict]:
    """Head on cached embeddings; ``new`` rows (feedback) are embedded apart so the base cache still hits."""
    cache = settings.run_dir / "cache"
    parts = [("train", ds.train), ("val", ds.val)] + ([("new", new)] if new and new.texts else [])
    x = {k: embed(p.texts, max_length=HEAD_MAX_LENGTH, cache_dir=cache, encoder_dir=settings.retrain.encoder_dir)
         for k, p in parts}
    x_train, y_train = x["train"], np.array(ds.train.labels)
    if "new" in x and new is not None:
        x_train, y_train = np.concatenate([x_train, x["new"]]), np.concatenate([y_train, np.array(new.labels)])
    state, val = train_head(x_train, y_train, x["val"], np.array(ds.val.labels), len(ds.labels), hidden=hidden)
    return state, val.as_dict(), {"kind": "package", "package": ENCODER_PACKAGE}


def weight_chat_rows(extra: Split, new: Split, sources: dict[str, str], weight: int) -> Split:
    """``new`` plus ``weight - 1`` more copies of each chat correction, so that each appears ``weight`` times.

    After :func:`apply_corrections` every corrected text is in the training split once (relabelled in place or
    new); chat is where the model is weakest and analysts' chat labels are the only servable chat labels that
    grow, so they count more (issue #29). ``sources`` maps ``norm_text`` to the correction's source.
    """
    final = {norm_text(t): (t, y) for t, y in zip(extra.texts, extra.labels, strict=True)}  # last one wins
    copies = [row for key, row in final.items() if sources.get(key) == "chat" for _ in range(weight - 1)]
    return Split(new.texts + [t for t, _ in copies], new.labels + [y for _, y in copies])


def _training_data(
    name: str, limit: int | None, extra: Split | None, train_with: tuple[str, ...], shared_dir: Path,
    extra_sources: dict[str, str] | None = None, chat_weight: int = 1,
) -> tuple[Dataset, list[str], Split | None]:
    """The committed splits (first ``limit`` rows), with ``train_with`` sets' rows and ``extra`` corrections
    applied to the training split; also the shared sets' description lines and the feedback rows that are new
    (chat corrections, by ``extra_sources``, repeated to ``chat_weight`` rows each)."""
    ds = load_dataset(name)
    ds = replace(ds, train=_limit(ds.train, limit), val=_limit(ds.val, limit), test=_limit(ds.test, limit))
    shared_lines: list[str] = []
    if train_with:
        rows, shared_lines = training_rows(shared_dir, train_with, name, ds.labels, [ds.train, ds.val, ds.test])
        ds = replace(ds, train=Split(ds.train.texts + rows.texts, ds.train.labels + rows.labels))
    new = None
    if extra is not None:
        corrected, new = apply_corrections(ds.train, extra)
        new = weight_chat_rows(extra, new, extra_sources or {}, chat_weight)
        ds = replace(ds, train=corrected)
    return ds, shared_lines, new


def train_version(
    settings: Settings, name: str, cfg: FinetuneConfig, *, version: int | None = None, limit: int | None = None,
    device: str | None = None, command: str | None = None, progress: bool = True, extra: Split | None = None,
    out_repo: Path | None = None, train_with: tuple[str, ...] = (), shared_dir: Path = SHARED_DIR,
    extra_sources: dict[str, str] | None = None,
) -> Path:
    """Train ``name`` in ``cfg.mode``, write ``<repo>/<name>/<version>``, test the written artifact.

    ``extra`` rows (analyst feedback) join the training split only, chat ones (``extra_sources``: source by
    ``norm_text``) ``retrain.chat_feedback_weight`` times; ``out_repo`` stages the version
    elsewhere (the retrain job) while numbering and lineage still follow the live repository.
    ``train_with`` names ``../shared`` sets whose rows join the training split too (experiments only:
    the version is marked and never served; see ``models.shared_sets``).
    """
    t0 = time.monotonic()
    repo = settings.triton.model_repository
    existing = version_numbers(repo, name)
    version = version or next_version(repo, name)
    ds, shared_lines, new = _training_data(name, limit, extra, train_with, shared_dir, extra_sources,
                                           settings.retrain.chat_feedback_weight)
    encoder_spec: dict[str, str]
    if cfg.mode == "head":
        head_state, val, encoder_spec = _head_only(settings, ds, cfg.hidden, new)
        encoder = tokenizer = None
        max_length, params = HEAD_MAX_LENGTH, None
        dev = "cpu"
    else:
        if new is not None:
            ds = replace(ds, train=Split(ds.train.texts + new.texts, ds.train.labels + new.labels))
        result = finetune(
            settings.retrain.encoder_dir or encoder_path(), (ds.train.texts, np.array(ds.train.labels)),
            (ds.val.texts, np.array(ds.val.labels)), len(ds.labels), cfg, device=device, progress=progress,
        )
        head_state, val = result.head_state, result.val.as_dict()
        encoder, tokenizer, dev, params = result.encoder, result.tokenizer, result.device, result.params
        encoder_spec = {"kind": "local", "path": ENCODER_DIR, "base": ENCODER_PACKAGE}
        max_length = cfg.max_length
    train_s = round(time.monotonic() - t0, 1)
    manifest = Manifest(
        name=name, version=version, labels=ds.labels, encoder=encoder_spec, max_length=max_length, hidden=cfg.hidden,
        metrics={"val": val, "train_seconds": train_s, "device": dev},
        created=now_iso(), parent=max((v for v in existing if v != version), default=None),
        data=(f"committed MIT data, split seed 7: {len(ds.train.labels)} train / {len(ds.val.labels)} val / "
              f"{len(ds.test.labels)} test" + (f"; + {len(extra.texts)} feedback rows in train" if extra else "")
              + "".join(f"; train includes {line}" for line in shared_lines)),
        mode=cfg.mode, params=params, command=command, shared_data=list(dict.fromkeys(train_with)) or None,
    )
    path = write_version(out_repo or repo, manifest, head_state, encoder, tokenizer)
    attach_onnx(path, ds.val)  # before the test figures: they describe what CPU serving runs
    manifest, test_probs = calibrate_version(path, ds, device)
    # the temperature leaves every argmax as it is, so the served labels' figures come from the raw probabilities
    test = metrics(np.array(ds.test.labels), test_probs.argmax(1), len(ds.labels)).as_dict()
    manifest = replace(manifest, metrics={**manifest.metrics, "test": test}, domains=test_domains(ds, test_probs))
    _rewrite_manifest(path, manifest)
    log.info("%s v%d (%s): test %s, trained in %.0fs on %s", name, version, cfg.mode, test, train_s, dev)
    return path


def attach_onnx(version_dir: Path, val: Split, threads: int | None = None) -> Manifest:
    """Export the version's ONNX graph, checked on the validation split, and record it in the manifest."""
    texts, labels = val.texts[:ONNX_CHECK_TEXTS], val.labels[:ONNX_CHECK_TEXTS]
    manifest = replace(read_manifest(version_dir),
                       runtime=export_onnx(version_dir, texts, check_labels=labels, threads=threads))
    _rewrite_manifest(version_dir, manifest)
    return manifest


def calibrate_version(version_dir: Path, ds: Dataset, device: str | None = None) -> tuple[Manifest, np.ndarray]:
    """Fit the temperature on val and measure ECE on test; on the calibrated val predictions, store the drift
    reference (what is served changed) and, for sentiment, the PACC rates per source. Returns the rewritten
    manifest and the uncalibrated test probabilities."""
    clf = Classifier(version_dir, device or "cpu", calibrated=False)
    val_probs, test_probs = predict_all(clf, ds.val.texts), predict_all(clf, ds.test.texts)
    calibration = calibration_record((val_probs, np.array(ds.val.labels)), (test_probs, np.array(ds.test.labels)))
    served = apply_temperature(val_probs, calibration["temperature"])
    manifest = replace(read_manifest(version_dir), calibration=calibration, reference=reference_from_probs(served),
                       prevalence=_prevalence(ds, served))
    _rewrite_manifest(version_dir, manifest)
    log.info("%s v%d: temperature %.3f, test ECE %.4f -> %.4f", manifest.name, manifest.version,
             calibration["temperature"], calibration["ece_before"], calibration["ece_after"])
    return manifest, test_probs


def _prevalence(ds: Dataset, served_val: np.ndarray) -> dict[str, object] | None:
    """PACC rates of the negative class per source (news, chat), for a model that has one (sentiment)."""
    if "negative" not in ds.labels:
        return None
    neg = ds.labels.index("negative")
    return source_rates(served_val[:, neg], np.array(ds.val.labels) == neg, text_sources(ds.name, ds.val.texts))


def needs_calibration(manifest: Manifest) -> bool:
    """A version written before temperature scaling, or a sentiment version without its PACC rates."""
    return manifest.calibration is None or ("negative" in manifest.labels and manifest.prevalence is None)


def test_domains(ds: Dataset, test_probs: np.ndarray) -> dict[str, object] | None:
    """The manifest's ``domains``: test figures for all texts, news and chat (None for topic)."""
    if "negative" not in ds.labels:
        return None
    reports = reports_by_source(test_probs, ds.test, text_sources(ds.name, ds.test.texts), ds.labels,
                                model=ds.name, version="", data="test split")
    return domain_record(reports)


def needs_domains(manifest: Manifest) -> bool:
    """A sentiment version written before its test figures were kept per source."""
    return "negative" in manifest.labels and manifest.domains is None


def backfill_calibration(version_dir: Path, limit: int | None = None, device: str | None = None) -> Manifest:
    """Calibrate an existing version in place (no training): temperature, ECE, rates and the drift reference;
    the figures per source come from the same test predictions."""
    ds = _eval_data(version_dir, limit)
    manifest, test_probs = calibrate_version(version_dir, ds, device)
    manifest = replace(manifest, domains=test_domains(ds, test_probs))
    _rewrite_manifest(version_dir, manifest)
    return manifest


def backfill_domains(version_dir: Path, limit: int | None = None, device: str | None = None) -> Manifest:
    """Store the test figures per source in an existing, calibrated version; nothing else changes."""
    ds = _eval_data(version_dir, limit)
    probs = predict_all(Classifier(version_dir, device or "cpu", calibrated=False), ds.test.texts)
    manifest = replace(read_manifest(version_dir), domains=test_domains(ds, probs))
    _rewrite_manifest(version_dir, manifest)
    return manifest


def _eval_data(version_dir: Path, limit: int | None) -> Dataset:
    ds = load_dataset(read_manifest(version_dir).name)
    return replace(ds, val=_limit(ds.val, limit), test=_limit(ds.test, limit))


def predict_all(clf: Classifier, texts: list[str], batch: int = 128) -> np.ndarray:
    return predict_probs(clf.predict_proba, texts, batch)


def speed(clf: Classifier, texts: list[str], batch: int = 64) -> float:
    """Texts per second at the worker's batch size, after one warm-up batch."""
    clf.predict_proba(texts[:batch])
    t0 = time.perf_counter()
    predict_all(clf, texts, batch)
    return round(len(texts) / (time.perf_counter() - t0), 1)


def evaluate_version(version_dir: Path, part: Split, device: str | None = None) -> dict[str, float]:
    """Figures of the exported artifact on a split, computed by the class Triton serves it with."""
    clf = Classifier(version_dir, device or "cpu")
    return metrics(np.array(part.labels), predict_all(clf, part.texts).argmax(1), len(clf.labels)).as_dict()


def backfill_reference(version_dir: Path, limit: int | None = None) -> dict[str, list[float]]:
    """Store the drift reference in a manifest that predates it: predictions on the val split."""
    manifest = read_manifest(version_dir)
    clf = Classifier(version_dir, "cpu")
    reference = reference_from_probs(predict_all(clf, load_dataset(manifest.name).val.texts[:limit]))
    _rewrite_manifest(version_dir, replace(manifest, reference=reference))
    return reference


def _rewrite_manifest(version_dir: Path, manifest: Manifest) -> None:
    art = artifact_dir(version_dir)
    for fname, text in ((MANIFEST, json.dumps(manifest.__dict__, indent=2) + "\n"), (CARD, model_card(manifest))):
        tmp = art / f".{fname}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(art / fname)
