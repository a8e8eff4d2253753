"""The settings sections: one per area, each the only place its fields and defaults are written.

Lower layers take their section (the detector takes ``DetectorSettings``, the rollout gates ``RolloutSettings``).
"""

from __future__ import annotations

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
    cpu_instances: int | None = Field(
        None, ge=1, description="Instances of each model on CPU (local stack), each with cpu_threads; None = one, "
        "Triton's default without a GPU (docs/performance.md measures two)."
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
