"""Version 1 of each model: a head trained on the frozen pretrained encoder, from committed data only."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from models.artifact import ArtifactError, Manifest, now_iso, validate_artifact, write_version
from models.data import load_dataset
from models.encoder import ENCODER_PACKAGE, embed
from models.head import metrics, train_head
from tonewatch.settings import Settings

log = logging.getLogger(__name__)
MODELS = ("sentiment", "topic")
MAX_LENGTH = 128


def train_head_version(settings: Settings, name: str, version: int = 1, hidden: int = 256) -> Path:
    """Embed the splits (cached), train the head, test it, and write the version folder."""
    t0 = time.monotonic()
    ds = load_dataset(name)
    cache = settings.run_dir / "cache"
    parts = {"train": ds.train, "val": ds.val, "test": ds.test}
    x = {k: embed(p.texts, max_length=MAX_LENGTH, cache_dir=cache) for k, p in parts.items()}
    y = {k: np.array(p.labels) for k, p in parts.items()}
    state, val = train_head(x["train"], y["train"], x["val"], y["val"], len(ds.labels), hidden=hidden)

    import torch

    from models.head import build_head

    head = build_head(x["train"].shape[1], len(ds.labels), hidden)
    head.load_state_dict(state)
    head.eval()
    with torch.no_grad():
        pred = head(torch.from_numpy(x["test"])).argmax(1).numpy()
    test = metrics(y["test"], pred, len(ds.labels))
    manifest = Manifest(
        name=name, version=version, labels=ds.labels,
        encoder={"kind": "package", "package": ENCODER_PACKAGE}, max_length=MAX_LENGTH, hidden=hidden,
        metrics={"val": val.as_dict(), "test": test.as_dict(), "train_seconds": round(time.monotonic() - t0, 1)},
        created=now_iso(), parent=None,
        data=f"committed MIT data, split seed 7: {len(y['train'])} train / {len(y['val'])} val / {len(y['test'])} test",
    )
    path = write_version(settings.model_repository, manifest, state)
    log.info("%s v%d: test %s in %.0fs", name, version, test.as_dict(), time.monotonic() - t0)
    return path


def ensure_models(settings: Settings, names: tuple[str, ...] = MODELS) -> list[str]:
    """Build version 1 of each model whose version 1 is missing or invalid; returns the names built."""
    built = []
    for name in names:
        try:
            validate_artifact(settings.model_repository / name / "1")
            continue
        except ArtifactError as exc:
            log.info("building %s v1: %s", name, exc)
        path = train_head_version(settings, name)
        m = validate_artifact(path).metrics["test"]
        print(f"{name} v1 test: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
              f"weighted-F1 {m['weighted_f1']:.3f}", flush=True)
        built.append(name)
    return built
