"""The v1 cache outside the clone: keyed by everything that makes the artifact, restored whole or not at all."""

from __future__ import annotations

from pathlib import Path

from models.artifact import artifact_dir
from models.v1_cache import cache_key, restore, store


def _data(tmp_path: Path, text: str) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "news_sentiment.csv").write_text(text)
    return data


def test_key_depends_on_recipe_data_and_name(tmp_path: Path) -> None:
    data = _data(tmp_path, "text,label\nup,positive\n")
    key = cache_key("sentiment", "epochs=3", data)
    assert key == cache_key("sentiment", "epochs=3", data)  # deterministic
    assert key != cache_key("sentiment", "epochs=4", data)
    assert key != cache_key("topic", "epochs=3", data)
    _data(tmp_path, "text,label\nup,negative\n")
    assert key != cache_key("sentiment", "epochs=3", data)


def test_store_then_restore_copies_the_whole_artifact(tmp_path: Path) -> None:
    trained = tmp_path / "repo" / "sentiment" / "1"
    (artifact_dir(trained) / "encoder").mkdir(parents=True)
    (artifact_dir(trained) / "manifest.json").write_text("{}")
    (artifact_dir(trained) / "encoder" / "model.safetensors").write_bytes(b"weights")
    entry = tmp_path / "cache" / "sentiment-v1-abc"
    entry.parent.mkdir()
    store(trained, entry)

    fresh = tmp_path / "clone" / "sentiment" / "1"
    fresh.mkdir(parents=True)
    assert restore(fresh, entry)
    assert (artifact_dir(fresh) / "encoder" / "model.safetensors").read_bytes() == b"weights"
    assert (artifact_dir(fresh) / "manifest.json").read_text() == "{}"
    assert [p.name for p in fresh.iterdir()] == ["artifact"]  # no temporary folder left behind


def test_restore_without_an_entry_leaves_the_version_alone(tmp_path: Path) -> None:
    version = tmp_path / "sentiment" / "1"
    version.mkdir(parents=True)
    assert not restore(version, tmp_path / "cache" / "missing")
    assert list(version.iterdir()) == []
