"""Subscriptions (filters + one destination), stored in a compacted topic keyed by id."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from tonewatch.alerts_cli import incident_matches

Kind = Literal["webhook", "alertmanager", "grafana"]
SEVERITIES = ("info", "warning", "critical")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# the only variables a subscription may have the notifier sign with: never its Kafka password or a cloud key
WEBHOOK_SECRET_PREFIX = "TONEWATCH_WEBHOOK_SECRET_"
WEBHOOK_SECRET_ENV = re.compile(rf"^{WEBHOOK_SECRET_PREFIX}[A-Z0-9_]+$")
# model_validate context of a subscription being made now; a stored one is read without it
SUBSCRIBING = {"subscribing": True}


class Subscription(BaseModel):
    """One destination and the incidents it wants; ``secret_env`` names an env var, never holds a secret."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Kind
    url: str
    name: str | None = None
    ticker: str | None = None
    topic: str | None = None
    dimension: str | None = None
    min_severity: str | None = None
    secret_env: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"'{v}' is not an http(s) URL")
        return v.rstrip("/")

    @field_validator("min_severity")
    @classmethod
    def _severity(cls, v: str | None) -> str | None:
        if v is not None and v not in SEVERITIES:
            raise ValueError(f"min severity must be one of {', '.join(SEVERITIES)}")
        return v

    @field_validator("dimension")
    @classmethod
    def _dimension(cls, v: str | None) -> str | None:
        from streams.windows.trends import DIMENSIONS

        if v is not None and v not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {', '.join(DIMENSIONS)}")
        return v

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and not ENV_NAME.match(v):
            raise ValueError(f"secret env must be an environment variable NAME like {WEBHOOK_SECRET_PREFIX}DESK "
                             "(not the secret)")
        # a stored record with an older name still loads, so the notifier dead-letters it with the reason
        # instead of the subscription vanishing
        if v is not None and info.context == SUBSCRIBING and not WEBHOOK_SECRET_ENV.match(v):
            raise ValueError(f"secret env must be named {WEBHOOK_SECRET_PREFIX}<NAME>, like "
                             f"{WEBHOOK_SECRET_PREFIX}DESK: the notifier signs with no other variable")
        return v

    def wants(self, incident: dict[str, Any]) -> bool:
        """The same filters as ``alerts tail``, plus a dimension filter: an incident with such an alert."""
        return incident_matches(incident, self.ticker, self.topic, self.min_severity, self.dimension)

    def describe(self) -> str:
        filters = [f"{k}={v}" for k in ("ticker", "topic", "dimension", "min_severity") if (v := getattr(self, k))]
        name = f" ({self.name})" if self.name else ""
        return f"{self.id}{name} {self.kind} {self.url} {' '.join(filters) or 'all incidents'}"


def new_subscription(**fields: Any) -> Subscription:
    """A subscription being made now: checked more strictly than one read back from the topic."""
    return Subscription.model_validate({"id": uuid.uuid4().hex[:12], **fields}, context=SUBSCRIBING)


def apply_record(subs: dict[str, Subscription], key: bytes | None, value: bytes | None) -> None:
    """Fold one record of the subscriptions topic into the current set (tombstone = removal)."""
    if key is None:
        return
    sid = key.decode()
    if value is None:
        subs.pop(sid, None)
        return
    try:
        subs[sid] = Subscription.model_validate(json.loads(value))
    except ValueError:
        subs.pop(sid, None)  # a record no version of this code wrote; unsubscribed rather than guessed
