"""The on-disk format of one model version: ``<repo>/<name>/<N>/artifact/`` beside the thin model.py.

Written to a temporary folder and renamed into place, so Triton never sees half a version.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.labels import LABELS

MANIFEST = "manifest.json"
HEAD_FILE = "head.safetensors"
MODEL_PY = Path(__file__).resolve().parent / "triton_model.py"


class ArtifactError(ValueError):
    """A version folder that must not be served."""


@dataclass(frozen=True)
class Manifest:
    name: str
    version: int
    labels: list[str]
    encoder: dict[str, str]
    max_length: int
    hidden: int
    metrics: dict[str, Any]
    created: str
    parent: int | None
    data: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except KeyError as exc:
            raise ArtifactError(f"manifest is missing '{exc.args[0]}'") from exc


def artifact_dir(version_dir: Path) -> Path:
    return version_dir / "artifact"


def read_manifest(version_dir: Path) -> Manifest:
    path = artifact_dir(version_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: no manifest")
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not JSON ({exc.msg})") from exc


def validate_artifact(version_dir: Path) -> Manifest:
    """Refuse anything Triton would fail on later: layout, label map, weights' shapes."""
    manifest = read_manifest(version_dir)
    expected = LABELS.get(manifest.name)
    if expected is not None and manifest.labels != expected:
        raise ArtifactError(f"{version_dir}: labels {manifest.labels} differ from {expected}")
    if not (version_dir / "model.py").is_file():
        raise ArtifactError(f"{version_dir}: no model.py")
    head = artifact_dir(version_dir) / HEAD_FILE
    if not head.is_file():
        raise ArtifactError(f"{head}: missing")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(head))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{head}: unreadable ({exc})") from exc
    last = max((k for k in tensors if k.endswith("weight")), default=None)
    if last is None or tensors[last].shape[0] != len(manifest.labels):
        raise ArtifactError(f"{head}: output size does not match {len(manifest.labels)} labels")
    return manifest


def write_version(
    repo: Path, manifest: Manifest, head_state: dict[str, Any]
) -> Path:
    """Create ``<repo>/<name>/<version>/`` atomically with model.py and the artifact."""
    from safetensors.torch import save_file

    final = repo / manifest.name / str(manifest.version)
    tmp = repo / manifest.name / f".tmp-{manifest.version}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "artifact").mkdir(parents=True)
    shutil.copyfile(MODEL_PY, tmp / "model.py")
    save_file({k: v.contiguous() for k, v in head_state.items()}, str(tmp / "artifact" / HEAD_FILE))
    (tmp / "artifact" / MANIFEST).write_text(json.dumps(manifest.__dict__, indent=2) + "\n")
    validate_artifact(tmp)
    if final.exists():
        shutil.rmtree(final / "artifact", ignore_errors=True)
        (tmp / "artifact").rename(final / "artifact")
        shutil.copyfile(MODEL_PY, final / "model.py")
        shutil.rmtree(tmp)
    else:
        tmp.rename(final)
    return final


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
