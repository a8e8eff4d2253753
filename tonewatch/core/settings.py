"""One frozen settings object in nested sections, built at the entry point; lower layers take their section.

Precedence: explicit arguments > ``TONEWATCH_*`` environment (``TONEWATCH_<SECTION>__<FIELD>``) > the local
stack's state file (``<run_dir>/stack.json``, written by ``tonewatch up``) > defaults. So every command finds
the local stack without flags, and production sets env vars. docs/reference/configuration.md lists every field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tonewatch.core.errors import ConfigError, InvalidInput
from tonewatch.core.sections import (
    DetectorSettings,
    KafkaSettings,
    ScoringSettings,
    Section,
    StackSettings,
    TritonSettings,
)
from tonewatch.core.service_sections import (
    ConsoleSettings,
    DeliverySettings,
    RetrainSettings,
    RolloutSettings,
    StoreSettings,
)

ENV_PREFIX = "TONEWATCH_"
NESTED = "__"
STATE_FILE = "stack.json"
# stack.json's endpoint names (a file format other tools read) -> the setting each one fills
STACK_ENDPOINTS = {
    "kafka_bootstrap": ("kafka", "bootstrap"),
    "triton_grpc_url": ("triton", "grpc_url"),
    "triton_http_url": ("triton", "http_url"),
    "triton_metrics_url": ("triton", "metrics_url"),
    "model_env_path": ("triton", "model_env_path"),
    "store_dsn": ("store", "dsn"),
}
# TONEWATCH_* variables that are not settings: a subscription's own webhook key, compose's Alertmanager and
# console secrets (read by compose on the host)
FOREIGN_VARIABLES = ("TONEWATCH_WEBHOOK_SECRET_", "TONEWATCH_ALERT_WEBHOOK_URL_FILE", "TONEWATCH_CONSOLE_USERS_FILE")


class StackStateSource(PydanticBaseSettingsSource):
    """Endpoints recorded by ``tonewatch up``; lower priority than the environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get(f"{ENV_PREFIX}RUN_DIR", ".tonewatch")) / STATE_FILE
        try:
            endpoints = json.loads(path.read_text()).get("endpoints", {}) if path.is_file() else {}
        except (OSError, json.JSONDecodeError, AttributeError):
            return {}
        found: dict[str, dict[str, Any]] = {}
        for name, (section, field) in STACK_ENDPOINTS.items():
            if name in endpoints:
                found.setdefault(section, {})[field] = endpoints[name]
        return found


class Settings(BaseSettings):
    """Everything configurable in Tonewatch, in sections; what every process shares sits at the top."""

    # an empty variable is an unset one: compose files pass optional settings as ``${VAR:-}``
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED, frozen=True,
                                      extra="forbid", env_ignore_empty=True)

    run_dir: Path = Field(Path(".tonewatch"), description="Runtime data, logs and the stack state file.")
    metrics_host: str = Field("127.0.0.1", description="Interface of the worker's and notifier's /metrics endpoints.")
    stack: StackSettings = Field(default_factory=StackSettings, description="The local stack.")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Kafka clients and topics.")
    triton: TritonSettings = Field(default_factory=TritonSettings, description="Triton and the model repository.")
    scoring: ScoringSettings = Field(default_factory=ScoringSettings, description="The worker's score stage.")
    detector: DetectorSettings = Field(default_factory=DetectorSettings, description="Windows and the detector.")
    delivery: DeliverySettings = Field(default_factory=DeliverySettings, description="The alert notifier.")
    rollout: RolloutSettings = Field(default_factory=RolloutSettings, description="Model rollouts and gates.")
    retrain: RetrainSettings = Field(default_factory=RetrainSettings, description="Retraining and drift.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="The PostgreSQL history store.")
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description="The analyst console.")

    @model_validator(mode="after")
    def _future_within_lateness(self) -> Self:
        """A message as far ahead as accepted must not make the on-time messages after it late."""
        if self.scoring.max_future_s >= self.detector.allowed_lateness_s > 0:
            raise ValueError(f"scoring.max_future_s ({self.scoring.max_future_s:g}) must be below "
                             f"detector.allowed_lateness_s ({self.detector.allowed_lateness_s})")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, StackStateSource(settings_cls), file_secret_settings)

    def updated(self, **changes: Any) -> Self:
        """A copy with ``section__field=value`` changes (the environment's spelling), validated again."""
        data: dict[str, Any] = {name: getattr(self, name) for name in type(self).model_fields}
        for name, value in _nest(changes).items():
            current = data.get(name)
            if isinstance(value, dict) and isinstance(current, Section):
                value = type(current).model_validate(current.model_dump() | value)
            data[name] = value
        return type(self).model_validate(data)

    def endpoints(self) -> dict[str, str]:
        """What ``tonewatch up`` records in stack.json (0600) for every later command; an unset one is left out."""
        found = {}
        for name, (section, field) in STACK_ENDPOINTS.items():
            value = getattr(getattr(self, section), field)
            if value is not None:
                found[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return found

    def with_endpoints(self, endpoints: Mapping[str, str]) -> Self:
        """A copy pointed at the endpoints a stack.json recorded."""
        return self.updated(**{f"{section}{NESTED}{field}": endpoints[name]
                               for name, (section, field) in STACK_ENDPOINTS.items() if name in endpoints})

    def environment(self) -> dict[str, str]:
        """These settings as the ``TONEWATCH_*`` variables production uses (secrets revealed), for a child."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            items = ((f"{name}{NESTED}{f}", getattr(value, f)) for f in type(value).model_fields) \
                if isinstance(value, Section) else ((name, value),)
            for key, item in items:
                if item is None:
                    continue
                if isinstance(item, SecretStr):
                    item = item.get_secret_value()
                env[f"{ENV_PREFIX}{key.upper()}"] = json.dumps(item) if isinstance(item, dict) else str(item)
        return env


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``TONEWATCH_*`` variables that name no setting: a typo, or a name from before the sections."""
    known = set()
    for name, info in Settings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, Section):
            known |= {f"{ENV_PREFIX}{name.upper()}{NESTED}{f.upper()}" for f in section.model_fields}
        else:
            known.add(f"{ENV_PREFIX}{name.upper()}")
    return sorted(v for v in environ if v.startswith(ENV_PREFIX) and v not in known
                  and not v.startswith(FOREIGN_VARIABLES))


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"kafka__bootstrap": x}`` -> ``{"kafka": {"bootstrap": x}}``; other keys and section objects as they are."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        section, sep, field = key.partition(NESTED)
        if not sep:
            nested[key] = value
        elif isinstance(nested.setdefault(section, {}), dict):
            nested[section][field] = value
        else:
            raise InvalidInput(f"{key}: the section {section!r} is also given whole")
    return nested


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The entry points' settings; a ``TONEWATCH_*`` variable that names no setting is refused, not ignored."""
    unknown = unknown_variables(os.environ if environ is None else environ)
    if unknown:
        raise ConfigError(f"{', '.join(unknown)} name no setting (sections are joined with '__', e.g. "
                          "TONEWATCH_KAFKA__BOOTSTRAP; docs/reference/configuration.md lists them)")
    return Settings()
