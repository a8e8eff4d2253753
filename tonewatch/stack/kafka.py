"""Apache Kafka's own broker from Maven Central jars, KRaft single node on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tonewatch.core.settings import Settings
from tonewatch.stack.procs import StackError, free_port, private_dir, spawn, stop, wait_ready, write_private

POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL listener beside the PLAINTEXT one, to run the secure client settings against a real broker;
    with ``mtls_port`` and ``client_ca``, also an SSL listener that requires a client certificate (mTLS).

    The broker keeps PLAINTEXT for itself (inter-broker, readiness); clients given only ``port`` must
    authenticate with PLAIN or SCRAM-SHA-512 over TLS, clients given ``mtls_port`` with a certificate signed by
    ``client_ca`` (a PEM file of CA certificates). ``keystore`` is one PEM file: the unencrypted PKCS#8
    private key and the certificate chain.
    """

    port: int
    keystore: Path
    users: Mapping[str, str]  # username -> password, for both mechanisms
    mtls_port: int | None = None
    client_ca: Path | None = None

    def listeners(self) -> str:
        mtls = f",SSL://127.0.0.1:{self.mtls_port}" if self.mtls_port else ""
        return f",SASL_SSL://127.0.0.1:{self.port}{mtls}"

    def properties(self) -> list[str]:
        plain = " ".join(f'user_{u}="{p}"' for u, p in self.users.items())
        prefix, module = "listener.name.sasl_ssl", "org.apache.kafka.common.security"
        props = [
            f"{prefix}.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512",
            f"{prefix}.plain.sasl.jaas.config={module}.plain.PlainLoginModule required {plain};",
            f"{prefix}.scram-sha-512.sasl.jaas.config={module}.scram.ScramLoginModule required;",
            f"{prefix}.ssl.keystore.type=PEM",
            f"{prefix}.ssl.keystore.location={self.keystore}",
        ]
        if self.mtls_port:
            if self.client_ca is None:
                raise ValueError("an mTLS listener needs client_ca, the CA that signs client certificates")
            props += [
                "listener.name.ssl.ssl.client.auth=required",
                "listener.name.ssl.ssl.keystore.type=PEM",
                f"listener.name.ssl.ssl.keystore.location={self.keystore}",
                "listener.name.ssl.ssl.truststore.type=PEM",
                f"listener.name.ssl.ssl.truststore.location={self.client_ca}",
            ]
        return props

    def scram_args(self) -> list[str]:
        """SCRAM credentials live in the KRaft metadata log: written when the storage is formatted."""
        return [a for u, p in self.users.items() for a in ("--add-scram", f"SCRAM-SHA-512=[name={u},password={p}]")]


@dataclass(frozen=True)
class KafkaProcess:
    pid: int
    bootstrap: str
    controller_port: int
    data_dir: Path
    log_path: Path
    secure_bootstrap: str | None = None  # the SASL_SSL listener, when started with one
    mtls_bootstrap: str | None = None  # the SSL listener that requires client certificates, when started with one


def ensure_kafka_jars(settings: Settings) -> Path:
    """Broker jars cached per version; downloaded into a temp dir and renamed, so never half there."""
    lib = (settings.run_dir / "kafka" / settings.stack.kafka_version / "lib").resolve()
    if (lib / f"kafka_2.13-{settings.stack.kafka_version}.jar").is_file():
        return lib
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise StackError(f"'{tool}' is not on PATH: the local Kafka broker needs a JDK (17+) and Maven")
    tmp = lib.with_name("lib.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
           "-DincludeScope=runtime", f"-Dkafka.version={settings.stack.kafka_version}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        out = (result.stdout + result.stderr)[-4000:]
        raise StackError(f"mvn failed to fetch Kafka {settings.stack.kafka_version}:\n{out}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    return lib


def server_properties(data_dir: Path, port: int, controller_port: int, secure: SecureListener | None = None) -> str:
    """Loopback-only listeners; retention off so replayed feeds with old event times are not deleted."""
    extra = secure.listeners() if secure else ""
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}{extra}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}{extra}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
        *(secure.properties() if secure else []),
        f"log.dirs={data_dir / 'logs'}",
        "num.partitions=1",
        "auto.create.topics.enable=true",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.ms=-1",
        "",
    ])


LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={path}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=WARN
log4j.logger.org.apache.kafka=WARN
"""


def _ready(bootstrap: str) -> bool:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def start_kafka(settings: Settings, data_dir: Path, port: int | None = None, timeout_s: float = 90.0,
                secure: SecureListener | None = None) -> KafkaProcess:
    """Format storage on first start only, then run the broker and wait until it answers."""
    lib = ensure_kafka_jars(settings)
    data_dir = data_dir.resolve()
    private_dir(data_dir)  # the broker's log segments hold raw chat
    port = port or free_port()
    controller = free_port()
    props = data_dir / "server.properties"
    write_private(props, server_properties(data_dir, port, controller, secure))
    write_private(data_dir / "log4j.properties", LOG4J.format(path=data_dir / "server.log"))
    cp = f"{lib}/*"
    java = ["java", f"-Dlog4j.configuration=file:{data_dir / 'log4j.properties'}", "-cp", cp]
    if not (data_dir / "logs" / "meta.properties").is_file():
        cluster_id = subprocess.run(
            [*java, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
        ).stdout.strip().splitlines()[-1]
        subprocess.run([*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                        *(secure.scram_args() if secure else [])], capture_output=True, text=True, check=True)
    log_path = data_dir / "kafka.out"
    pid = spawn([java[0], "-Xms256m", "-Xmx768m", *java[1:], "kafka.Kafka", str(props)], log_path)
    bootstrap = f"127.0.0.1:{port}"
    wait_ready("kafka", pid, log_path, lambda: _ready(bootstrap), timeout_s)
    return KafkaProcess(pid, bootstrap, controller, data_dir, log_path,
                        f"127.0.0.1:{secure.port}" if secure else None,
                        f"127.0.0.1:{secure.mtls_port}" if secure and secure.mtls_port else None)


def stop_kafka(proc: KafkaProcess) -> None:
    stop(proc.pid, timeout_s=30)
