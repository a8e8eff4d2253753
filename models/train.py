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
    version_numbers,
    write_version,
)
from models.data import Dataset, Split, load_dataset
from models.encoder import ENCODER_PACKAGE, embed, encoder_path
from models.finetune import FinetuneConfig, finetune
from models.head import metrics, train_head
from tonewatch.settings import Settings

log = logging.getLogger(__name__)
HEAD_MAX_LENGTH = 128


def _limit(part: Split, n: int | None) -> Split:
    return part if n is None else Split(part.texts[:n], part.labels[:n])


def _head_only(settings: Settings, ds: Dataset, hidden: int) -> tuple[dict[str, object], dict[str, float], dict]:
    cache = settings.run_dir / "cache"
    x = {k: embed(p.texts, max_length=HEAD_MAX_LENGTH, cache_dir=cache, encoder_dir=settings.encoder_dir)
         for k, p in (("train", ds.train), ("val", ds.val))}
    state, val = train_head(x["train"], np.array(ds.train.labels), x["val"], np.array(ds.val.labels),
                            len(ds.labels), hidden=hidden)
    return state, val.as_dict(), {"kind": "package", "package": ENCODER_PACKAGE}


def train_version(
    settings: Settings, name: str, cfg: FinetuneConfig, *, version: int | None = None, limit: int | None = None,
    device: str | None = None, command: str | None = None, progress: bool = True,
) -> Path:
    """Train ``name`` in ``cfg.mode``, write ``<repo>/<name>/<version>``, test the written artifact."""
    t0 = time.monotonic()
    repo = settings.model_repository
    existing = version_numbers(repo, name)
    version = version or next_version(repo, name)
    ds = load_dataset(name)
    ds = replace(ds, train=_limit(ds.train, limit), val=_limit(ds.val, limit), test=_limit(ds.test, limit))
    encoder_spec: dict[str, str]
    if cfg.mode == "head":
        head_state, val, encoder_spec = _head_only(settings, ds, cfg.hidden)
        encoder = tokenizer = None
        max_length, params = HEAD_MAX_LENGTH, None
        dev = "cpu"
    else:
        result = finetune(
            settings.encoder_dir or encoder_path(), (ds.train.texts, np.array(ds.train.labels)),
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
              f"{len(ds.test.labels)} test"),
        mode=cfg.mode, params=params, command=command,
    )
    path = write_version(repo, manifest, head_state, encoder, tokenizer)
    test = evaluate_version(path, ds.test, device=device)
    manifest = replace(manifest, metrics={**manifest.metrics, "test": test})
    _rewrite_manifest(path, manifest)
    log.info("%s v%d (%s): test %s, trained in %.0fs on %s", name, version, cfg.mode, test, train_s, dev)
    return path


def evaluate_version(version_dir: Path, part: Split, device: str | None = None) -> dict[str, float]:
    """Figures of the exported artifact on a split, computed by the class Triton serves it with."""
    from models.serving import Classifier

    clf = Classifier(version_dir, device or "cpu")
    probs = np.concatenate([clf.predict_proba(part.texts[i : i + 128]) for i in range(0, len(part.texts), 128)])
    return metrics(np.array(part.labels), probs.argmax(1), len(clf.labels)).as_dict()


def _rewrite_manifest(version_dir: Path, manifest: Manifest) -> None:
    art = artifact_dir(version_dir)
    for fname, text in ((MANIFEST, json.dumps(manifest.__dict__, indent=2) + "\n"), (CARD, model_card(manifest))):
        tmp = art / f".{fname}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(art / fname)
