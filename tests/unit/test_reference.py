"""docs/reference/ is generated from the CLI and the settings; a stale checked-in copy fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tonewatch import reference


@pytest.fixture(scope="module")
def generated() -> dict[Path, str]:
    return reference.references()


@pytest.mark.parametrize("name", ["cli.md", "configuration.md"])
def test_checked_in_reference_is_current(generated: dict[Path, str], name: str) -> None:
    path = reference.REFERENCE_DIR / name
    assert path.is_file(), f"docs/reference/{name} is missing: run `make docs`"
    assert path.read_text() == generated[path], f"docs/reference/{name} is stale: run `make docs`"


def test_cli_reference_lists_every_command_with_its_options(generated: dict[Path, str]) -> None:
    text = generated[reference.REFERENCE_DIR / "cli.md"]
    for command in ("## `tonewatch up`", "## `tonewatch models train`", "## `tonewatch alerts subscribe`",
                    "## `tonewatch feedback add`", "## `tonewatch eval scenarios`"):
        assert command in text
    assert "`--class-weights`, `--no-class-weights`" in text
    assert "--install-completion" not in text


def test_config_reference_names_every_variable(generated: dict[Path, str]) -> None:
    from tonewatch.core.sections import Section
    from tonewatch.core.settings import Settings

    text = generated[reference.REFERENCE_DIR / "configuration.md"]
    for name, info in Settings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, Section):
            for field in section.model_fields:
                assert f"`TONEWATCH_{name.upper()}__{field.upper()}`" in text
        else:
            assert f"`TONEWATCH_{name.upper()}`" in text


def test_nested_sections_use_the_nested_delimiter() -> None:
    class Kafka(BaseModel):
        bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")

    class Nested(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="TONEWATCH_", env_nested_delimiter="__")
        kafka: Kafka = Kafka()
        window_s: int = Field(60, ge=1, description="Window length.")

    text = reference.config_reference(Nested)
    assert "| `TONEWATCH_KAFKA__BOOTSTRAP` | `str` | `127.0.0.1:9092` | Kafka bootstrap servers. |" in text
    assert "| `TONEWATCH_WINDOW_S` | `int` (>= 1) | `60` | Window length. |" in text


def test_check_names_the_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(reference, "REPO", tmp_path)
    monkeypatch.setattr(reference, "REFERENCE_DIR", tmp_path / "docs" / "reference")
    monkeypatch.setattr(reference, "references", lambda: {tmp_path / "docs" / "reference" / "cli.md": "new\n"})
    assert reference.main(["--check"]) == 1
    assert "docs/reference/cli.md" in capsys.readouterr().err
    assert reference.main(["--write"]) == 0
    assert reference.main(["--check"]) == 0
