"""The settings object: nested sections, one spelling (``section__field``) for the environment and for copies."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from tonewatch.core.errors import ConfigError
from tonewatch.core.sections import DetectorSettings
from tonewatch.core.settings import Settings, load_settings, unknown_variables


def _clear(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import os

    for name in [v for v in os.environ if v.startswith("TONEWATCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TONEWATCH_RUN_DIR", str(tmp_path))  # no stack.json there


def test_sections_read_their_nested_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    _clear(monkeypatch, tmp_path)
    monkeypatch.setenv("TONEWATCH_KAFKA__TOPIC_PREFIX", "desk")
    monkeypatch.setenv("TONEWATCH_DETECTOR__MIN_VOLUME_BY_DIMENSION", '{"source": 20}')
    s = Settings()
    assert s.kafka.topic("alerts") == "desk.alerts" and s.kafka.group_id == "tonewatch-desk"
    assert s.detector.min_volume_for("source") == 20 and s.detector.min_volume_for("ticker") == 5


def test_updated_changes_one_field_of_a_section_and_validates_it() -> None:
    s = Settings().updated(kafka__topic_prefix="a", detector__z=3.0)
    t = s.updated(kafka__bootstrap="b:1")
    assert (t.kafka.bootstrap, t.kafka.topic_prefix, t.detector.z) == ("b:1", "a", 3.0)
    with pytest.raises(ValidationError):
        s.updated(detector__window_s=0)
    with pytest.raises(ValidationError):
        s.updated(kafka__no_such_field=1)


def test_the_environment_of_a_child_rebuilds_the_same_settings(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: object) -> None:
    _clear(monkeypatch, tmp_path)
    s = Settings().updated(run_dir=str(tmp_path), kafka__topic_prefix="p", delivery__webhook_secret=SecretStr("k"),
                           detector__min_volume_by_dimension={"topic": 9})
    env = s.environment()
    assert env["TONEWATCH_DELIVERY__WEBHOOK_SECRET"] == "k"  # revealed only for the child process
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == s


def test_a_rolling_view_is_never_shorter_than_a_window() -> None:
    assert DetectorSettings(window_s=600, rolling_s=300).rolling_s == 600


def test_stack_endpoints_round_trip() -> None:
    s = Settings().updated(kafka__bootstrap="k:1", triton__grpc_url="t:2")
    assert Settings().with_endpoints(s.endpoints()).kafka.bootstrap == "k:1"
    assert Settings().with_endpoints({"triton_grpc_url": "t:9"}).triton.grpc_url == "t:9"


def test_a_variable_that_names_no_setting_is_refused_not_ignored() -> None:
    env = {"TONEWATCH_KAFKA_BOOTSTRAP": "old:1", "TONEWATCH_KAFKA__BOOTSTRAP": "new:1", "TONEWATCH_RUN_DIR": "x",
           "TONEWATCH_WEBHOOK_SECRET_DESK": "a subscription's own key", "HOME": "/root",
           "TONEWATCH_CONSOLE_USERS_FILE": "compose's console users secret, read by compose on the host"}
    assert unknown_variables(env) == ["TONEWATCH_KAFKA_BOOTSTRAP"]
    with pytest.raises(ConfigError, match="TONEWATCH_KAFKA_BOOTSTRAP name no setting"):
        load_settings(env)


def test_a_future_tolerance_as_long_as_the_lateness_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"max_future_s \(120\) must be below detector.allowed_lateness_s"):
        Settings().updated(scoring__max_future_s=120)
