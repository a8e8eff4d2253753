"""Version 1 of each model: the encoder's top layers fine-tuned with the head, from committed data only.

Minutes on a laptop CPU, so a fresh clone serves fine-tuned models; full fine-tunes come from
``tonewatch models train --mode full``. Figures: docs/models.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from models.artifact import ArtifactError, validate_artifact
from models.data import DATA_DIR
from models.finetune import FinetuneConfig
from models.train import (
    backfill_calibration,
    backfill_domains,
    backfill_reference,
    needs_calibration,
    needs_domains,
    train_version,
)
from models.v1_cache import cache_key, cache_root, restore, store
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
MODELS = ("sentiment", "topic")
# Epochs and class weights per model: why, in docs/decisions/2026-12-07-top-layer-v1.md; figures in docs/models.md.
V1 = {
    "sentiment": FinetuneConfig(mode="top", train_layers=3, epochs=3, class_weights=False),
    "topic": FinetuneConfig(mode="top", train_layers=3, epochs=5),
}


def v1_command(name: str) -> str:
    """The command line that rebuilds version 1 of ``name``, recorded in its manifest and card."""
    cfg = V1[name]
    return f"tonewatch models train {name} --mode {cfg.mode} --train-layers {cfg.train_layers} " \
           f"--epochs {cfg.epochs}{'' if cfg.class_weights else ' --no-class-weights'} --version 1"


def ensure_models(settings: Settings, names: tuple[str, ...] = MODELS) -> list[str]:
    """Build version 1 of each model whose version 1 is missing or invalid; returns the names built."""
    built = []
    for name in names:
        try:
            complete_v1(settings.triton.model_repository / name / "1")
            continue
        except ArtifactError as exc:
            log.info("building %s v1: %s", name, exc)
        version_dir = settings.triton.model_repository / name / "1"
        entry = cache_root() / f"{name}-v1-{cache_key(name, repr(V1[name]), DATA_DIR)}"
        if restore(version_dir, entry):
            log.info("%s v1 restored from the cache %s", name, entry)
            path = version_dir
            complete_v1(path)
        else:
            path = train_version(settings, name, V1[name], version=1, progress=False, command=v1_command(name))
            store(path, entry)
        manifest = validate_artifact(path)
        m = manifest.metrics["test"]
        print(f"{name} v1 test: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
              f"weighted-F1 {m['weighted_f1']:.3f}", flush=True)
        for source, f in (manifest.domains or {}).get("figures", {}).items():
            if source != "all":
                print(f"  {source} ({f['n']} texts): accuracy {f['accuracy']:.3f}, macro-F1 {f['macro_f1']:.3f}, "
                      f"negative precision {f['negative_precision']:.3f}, recall {f['negative_recall']:.3f}",
                      flush=True)
        built.append(name)
    return built


def complete_v1(version_dir: Path, limit: int | None = None) -> None:
    """Store what an existing version 1 predates, computed from its weights: never a reason to train again.

    Calibration also rewrites the drift reference, since what is served changes with the temperature; the test
    figures per source (news, chat) are measured with it, or alone for a version calibrated before them.
    """
    manifest = validate_artifact(version_dir)
    if needs_calibration(manifest):
        log.info("calibrating %s v1 and measuring its PACC rates", manifest.name)
        backfill_calibration(version_dir, limit)  # the figures per source too
        return
    if manifest.reference is None:
        log.info("storing the drift reference of %s v1", manifest.name)
        backfill_reference(version_dir, limit)
    if needs_domains(manifest):
        log.info("measuring %s v1 on the test split per source (news, chat)", manifest.name)
        backfill_domains(version_dir, limit)
