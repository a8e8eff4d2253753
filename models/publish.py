"""``tonewatch models push``: check a new version offline, then add it to the repository atomically.

Nothing reaches Triton's repository until it has passed the same checks Triton's model.py would
hit at load time plus one offline inference, so a bad artifact is refused with a reason here,
not discovered as a failed load (or worse, a serving model that outputs garbage).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from models.artifact import (
    MANIFEST,
    MODEL_PY,
    ArtifactError,
    Manifest,
    artifact_dir,
    experiment_reason,
    next_version,
    refuse_symlinks,
    validate_artifact,
)
from tonewatch.core.settings import Settings

# a few headlines every model must score with finite, normalised probabilities
SMOKE_TEXTS = [
    "$TSLA plunges after a recall of 2 million vehicles",
    "Fed holds rates steady and signals patience",
    "Apple beats estimates; shares jump 5% after hours",
    "Oil rises as OPEC+ extends output cuts",
    "",
]


def config_labels(settings: Settings, name: str) -> list[str]:
    """The label order the deployed model promises (config.pbtxt's ``labels`` parameter)."""
    from models.triton_admin import parse_model_config

    path = settings.triton.model_repository / name / "config.pbtxt"
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model in the repository")
    cfg = parse_model_config(path)
    if "labels" not in cfg.parameters:
        raise ArtifactError(f"{path}: no 'labels' parameter")
    labels: list[str] = json.loads(cfg.parameters["labels"].string_value)
    return labels


def check_probs(probs: np.ndarray, n: int, n_labels: int, where: str) -> None:
    """Shared by the offline and the served smoke test."""
    if probs.shape != (n, n_labels):
        raise ArtifactError(f"{where}: output shape {probs.shape}, expected {(n, n_labels)}")
    if not np.isfinite(probs).all():
        raise ArtifactError(f"{where}: non-finite probabilities")
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ArtifactError(f"{where}: probabilities do not sum to 1 ({probs.sum(axis=1).round(4).tolist()})")


def smoke_offline(version_dir: Path) -> None:
    from models.serving import Classifier

    try:
        clf = Classifier(version_dir)
        probs = clf.predict_proba(SMOKE_TEXTS)
    except ArtifactError:
        raise
    except Exception as exc:  # whatever torch/safetensors raise on a broken artifact
        raise ArtifactError(f"{version_dir}: offline inference failed: {exc}") from exc
    check_probs(probs, len(SMOKE_TEXTS), len(clf.labels), f"{version_dir}: offline smoke test")


def _source_artifact(path: Path) -> Path:
    """Accept a version folder (``N/`` with ``artifact/``) or the artifact folder itself."""
    if (path / "artifact" / MANIFEST).is_file():
        return artifact_dir(path)
    if (path / MANIFEST).is_file():
        return path
    raise ArtifactError(f"{path}: neither a version folder nor an artifact folder (no {MANIFEST})")


def push_version(settings: Settings, name: str, path: Path) -> int:
    """Validate ``path`` and copy it into the repository as the next version; returns that number.

    The copy is built in a hidden temporary folder, checked there (layout, manifest, label map,
    offline smoke inference) and renamed into place, so Triton never sees a partial or bad version.
    """
    labels = config_labels(settings, name)
    src = _source_artifact(Path(path))
    folder = settings.triton.model_repository / name
    version = next_version(settings.triton.model_repository, name)
    tmp = folder / f".tmp-push-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        refuse_symlinks(src)
        shutil.copytree(src, tmp / "artifact")
        shutil.copyfile(MODEL_PY, tmp / "model.py")  # always our adapter, never code that came with the artifact
        manifest_path = tmp / "artifact" / MANIFEST
        try:
            raw = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{src / MANIFEST}: not JSON ({exc.msg})") from exc
        if not isinstance(raw, dict):
            raise ArtifactError(f"{src / MANIFEST}: not a JSON object")
        if raw.get("name") != name:
            raise ArtifactError(f"{src}: manifest is for model '{raw.get('name')}', not '{name}'")
        if raw.get("labels") != labels:
            raise ArtifactError(f"{src}: label map {raw.get('labels')} differs from {name}'s labels {labels}")
        if raw.get("shared_data"):  # the same refusal serving makes, before a version number is spent on it
            raise ArtifactError(f"{src}: {experiment_reason(raw['shared_data'])}: an experiment, never pushed")
        source_version = raw.get("version")
        manifest = Manifest.from_dict({**raw, "version": version,
                                       "parent": raw["parent"] if raw.get("parent") is not None else source_version})
        manifest_path.write_text(json.dumps({**raw, **manifest.__dict__}, indent=2) + "\n")
        for p in tmp.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        validate_artifact(tmp)
        smoke_offline(tmp)
        tmp.rename(folder / str(version))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version
