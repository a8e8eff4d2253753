"""The on-disk format of one model version: ``<repo>/<name>/<N>/artifact/`` beside the thin model.py.

Written to a temporary folder and renamed into place, so Triton never sees half a version.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.labels import LABELS
from streams.windows.prevalence import Rates
from tonewatch.core.errors import InvalidInput

MANIFEST = "manifest.json"
HEAD_FILE = "head.safetensors"
CARD = "MODEL_CARD.md"
ENCODER_DIR = "encoder"  # a fine-tuned encoder travels inside its version
MODEL_PY = Path(__file__).resolve().parent / "triton_model.py"


class ArtifactError(InvalidInput):
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
    mode: str = "head"
    params: int | None = None
    command: str | None = None
    reference: dict[str, list[float]] | None = None  # predictions on val: the drift baseline (streams/control/drift.py)
    runtime: dict[str, Any] | None = None  # the ONNX graph served on CPU and its checks (models/onnx_export.py)
    shared_data: list[str] | None = None  # ../shared sets it trained on (models/shared_sets.py): never served
    calibration: dict[str, Any] | None = None  # temperature fitted on val, ECE on test (models/calibration.py)
    prevalence: dict[str, Any] | None = None  # PACC rates per source on val (streams/windows/prevalence.py)
    domains: dict[str, Any] | None = None  # test figures per source: news, chat, all (models/domains.py)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        try:
            optional = {"mode", "params", "command", "reference", "runtime", "shared_data", "calibration",
                        "prevalence", "domains"}
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d or k not in optional})
        except KeyError as exc:
            raise ArtifactError(f"manifest is missing '{exc.args[0]}'") from exc


def artifact_dir(version_dir: Path) -> Path:
    return version_dir / "artifact"


def inside(version_dir: Path, relative: str, what: str) -> Path:
    """A path a manifest names, refused unless it is relative, without '..', and no symlink leads out of the
    artifact folder: a manifest must not make the server read files elsewhere."""
    rel = Path(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts:
        raise ArtifactError(f"{version_dir}: {what} '{relative}' must be a relative path inside the artifact")
    base = artifact_dir(version_dir)
    path = base / rel
    for part in [path, *path.parents]:
        if part == base:
            break
        if part.is_symlink():
            raise ArtifactError(f"{version_dir}: {what} '{relative}' goes through a symlink")
    return path


def refuse_symlinks(folder: Path) -> None:
    """An artifact to push holds plain files and folders only: a symlink could copy in any file of the host."""
    links = [p for p in folder.rglob("*") if p.is_symlink()]
    if links:
        raise ArtifactError(f"{folder}: symlinks are not accepted in an artifact ({links[0].relative_to(folder)})")


def read_manifest(version_dir: Path) -> Manifest:
    path = artifact_dir(version_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: no manifest")
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not JSON ({exc.msg})") from exc


def drift_reference(version_dir: Path) -> dict[str, list[float]] | None:
    """The drift baseline a version's manifest stores (predictions on val); None if it predates drift."""
    return read_manifest(version_dir).reference


def prevalence_rates(version_dir: Path) -> dict[str, Rates] | None:
    """The sentiment version's PACC rates per source ("news", "chat", "all"); None if its manifest has none.

    A source whose rates could not be measured is left out; the worker then uses the rates of "all"
    (``streams.score.rates``), and counts labels only for a version with none."""
    stored = read_manifest(version_dir).prevalence
    if not stored:
        return None
    try:
        return {source: Rates(float(r[0]), float(r[1])) for source, r in stored["rates"].items() if r is not None}
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{version_dir}: unreadable prevalence rates ({exc})") from exc


def temperature(manifest: Manifest) -> float | None:
    """The temperature serving divides log-probabilities by; None when the version is uncalibrated."""
    if not manifest.calibration or "temperature" not in manifest.calibration:
        return None
    t = manifest.calibration["temperature"]
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        raise ArtifactError(f"{manifest.name} v{manifest.version}: calibration temperature {t!r} is not a "
                            "positive number")
    return float(t)


def experiment_only(version_dir: Path) -> bool:
    """Trained on ``../shared`` data (``models.shared_sets``): never the version a start picks to serve."""
    try:
        return bool(read_manifest(version_dir).shared_data)
    except ArtifactError:  # an unreadable version fails where it is loaded, with its own message
        return False


def experiment_reason(shared_data: list[str]) -> str:
    """Why a version is never pushed or served; one wording for ``push``, ``rollout`` and the rest."""
    return f"trained on {', '.join(map(str, shared_data))} (../shared data whose licences forbid production use)"


def validate_artifact(version_dir: Path) -> Manifest:
    """Refuse anything Triton would fail on later: layout, label map, weights' shapes."""
    manifest = read_manifest(version_dir)
    expected = LABELS.get(manifest.name)
    if expected is not None and manifest.labels != expected:
        raise ArtifactError(f"{version_dir}: labels {manifest.labels} differ from {expected}")
    if not (version_dir / "model.py").is_file():
        raise ArtifactError(f"{version_dir}: no model.py")
    temperature(manifest)
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
    graph = (manifest.runtime or {}).get("file")
    if graph is not None and not inside(version_dir, str(graph), "the ONNX graph").is_file():
        raise ArtifactError(f"{version_dir}: manifest names ONNX graph '{graph}', which is missing")
    if manifest.encoder.get("kind") == "local":
        enc = inside(version_dir, str(manifest.encoder.get("path", "")), "the encoder folder")
        missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (enc / f).is_file()]
        if missing:
            raise ArtifactError(f"{enc}: fine-tuned encoder lacks {', '.join(missing)}")
    elif manifest.encoder.get("kind") != "package":
        raise ArtifactError(f"{version_dir}: unknown encoder spec {manifest.encoder}")
    exported = (manifest.runtime or {}).get("weights_sha256")
    if graph is not None and exported is not None and exported != weights_digest(version_dir, manifest.encoder):
        # CPU serving runs the graph: weights edited after export would be silently ignored
        raise ArtifactError(f"{version_dir}: ONNX graph is stale, the weights changed after it was exported "
                            "(run `tonewatch models export-onnx`)")
    return manifest


def weights_digest(version_dir: Path, encoder: dict[str, str]) -> str:
    """sha256 over the head and a fine-tuned encoder's weights: what an exported graph was built from."""
    import hashlib

    digest = hashlib.sha256()
    files = [artifact_dir(version_dir) / HEAD_FILE]
    if encoder.get("kind") == "local":
        files.append(artifact_dir(version_dir) / encoder.get("path", "") / "model.safetensors")
    for path in files:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def model_card(m: Manifest) -> str:
    """What an ops person needs before promoting a version: lineage, data, figures, how to reproduce."""
    lines = [f"# {m.name} v{m.version}", "", f"- created: {m.created}", f"- parent version: {m.parent}",
             f"- mode: {m.mode}" + (f" ({m.params:,} parameters)" if m.params else ""),
             f"- encoder: {m.encoder}", f"- max length: {m.max_length} tokens", f"- labels: {', '.join(m.labels)}",
             f"- data: {m.data}"]
    if m.shared_data:
        lines.append(f"- **experiment only**: trained on {', '.join(m.shared_data)} (licences forbid serving it)")
    if m.command:
        lines.append(f"- command: `{m.command}`")
    lines += ["", "| split | accuracy | macro-F1 | weighted-F1 |", "|---|---|---|---|"]
    for split in ("val", "test"):
        r = m.metrics.get(split)
        if isinstance(r, dict):
            lines.append(f"| {split} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['weighted_f1']:.4f} |")
    lines += domain_lines(m.domains)
    if m.runtime:
        rt = m.runtime
        f1 = (f"; val weighted-F1 fp32 {rt['fp32_weighted_f1']}, int8 {rt['int8_weighted_f1']}"
              if "int8_weighted_f1" in rt else "")
        lines += ["", f"- CPU runtime: ONNX Runtime, `{rt['file']}` (int8 agreement with fp32 on val: "
                  f"{rt.get('int8_agreement')}{f1}; fp32 max |p - torch|: {rt.get('max_abs_diff_vs_torch')})"]
    lines += _calibration_lines(m)
    extra = {k: v for k, v in m.metrics.items() if k not in ("val", "test")}
    if extra:
        lines += ["", *(f"- {k}: {v}" for k, v in extra.items())]
    return "\n".join(lines) + "\n"


def _calibration_lines(m: Manifest) -> list[str]:
    lines: list[str] = []
    if m.calibration:
        c = m.calibration
        lines += ["", f"- calibration: temperature {c['temperature']} fitted on {c.get('fit_split', 'val')}; "
                  f"ECE ({c.get('ece_bins', 15)} bins, {c.get('ece_split', 'test')} split) "
                  f"{c['ece_before']:.3f} → {c['ece_after']:.3f}"]
    if m.prevalence:
        p = m.prevalence
        lines += ["", f"PACC rates of '{p['label']}' (mean calibrated p_{p['label']} of true {p['label']} (tpr) and "
                  f"of other (fpr) {p.get('split', 'val')} messages):", "",
                  "| source | tpr | fpr | negatives |", "|---|---|---|---|"]
        negatives = p.get("negatives", {})
        lines += [f"| {s} | {r[0]:.3f} | {r[1]:.3f} | {negatives.get(s, '')} |" if r else f"| {s} | - | - | "
                  f"{negatives.get(s, '')} |" for s, r in p["rates"].items()]
        if p.get("fallback"):
            lines += ["", f"- {', '.join(p['fallback'])}: fewer than {p.get('min_negatives', 20)} negatives on "
                      f"{p.get('split', 'val')}, so the rates of all are used"]
    return lines


def version_numbers(repo: Path, name: str) -> list[int]:
    folder = repo / name
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []


def next_version(repo: Path, name: str) -> int:
    return max(version_numbers(repo, name), default=0) + 1


def write_version(
    repo: Path, manifest: Manifest, head_state: dict[str, Any], encoder: Any = None, tokenizer: Any = None
) -> Path:
    """Create ``<repo>/<name>/<version>/`` atomically with model.py, the artifact and its model card."""
    from safetensors.torch import save_file

    final = repo / manifest.name / str(manifest.version)
    tmp = repo / manifest.name / f".tmp-{manifest.version}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "artifact").mkdir(parents=True)
    shutil.copyfile(MODEL_PY, tmp / "model.py")
    save_file({k: v.contiguous() for k, v in head_state.items()}, str(tmp / "artifact" / HEAD_FILE))
    if encoder is not None:
        encoder.save_pretrained(str(tmp / "artifact" / ENCODER_DIR), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp / "artifact" / ENCODER_DIR))
    (tmp / "artifact" / MANIFEST).write_text(json.dumps(manifest.__dict__, indent=2) + "\n")
    (tmp / "artifact" / CARD).write_text(model_card(manifest))
    for path in tmp.rglob("*"):  # safetensors writes 0600: a Triton running as another user could not read it
        path.chmod(0o755 if path.is_dir() else 0o644)
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


def domain_lines(domains: dict[str, Any] | None) -> list[str]:
    """The model card's table of the figures per source."""
    if not domains:
        return []
    lines = ["", f"Per source on the {domains.get('split', 'test')} split (negative: the class alerts count):", "",
             "| source | n | accuracy | macro-F1 | weighted-F1 | negative precision | negative recall | negatives |",
             "|---|---|---|---|---|---|---|---|"]
    for source, f in domains.get("figures", {}).items():
        lines.append(f"| {source} | {f['n']} | {f['accuracy']:.3f} | {f['macro_f1']:.3f} | {f['weighted_f1']:.3f} | "
                     f"{f['negative_precision']:.3f} | {f['negative_recall']:.3f} | {f['negatives']} |")
    return lines
