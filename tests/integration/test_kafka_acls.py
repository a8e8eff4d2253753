"""Compose's Kafka trust boundary on a real broker: deploy/kafka/compose as compose runs it, on loopback ports.

make-certs.sh makes the CA and broker certificate, start-broker.sh formats the storage with the SCRAM logins
and starts the broker with compose's server.properties (ports and paths moved to a temp folder), and
kafka_setup.py creates the topics and applies acls.txt. Then each principal does what its service does, and
one without an ACL on ``subscriptions`` is refused.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import ACL, ACLOperation, ACLPermissionType, KafkaAdminClient, ResourcePattern, ResourceType
from kafka.errors import TopicAuthorizationFailedError
from pydantic import SecretStr

from tests.integration.conftest import Worker, wait_for
from tests.unit.test_compose_trust import KAFKA_DIR, _kafka_setup
from tonewatch.core.kafka_io import client_config, iter_topic, producer, topic_size
from tonewatch.core.settings import Settings
from tonewatch.core.topics import state_changelog
from tonewatch.stack import worker_env
from tonewatch.stack.kafka import ensure_kafka_jars
from tonewatch.stack.procs import free_port, spawn, stop, wait_ready

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERS = ("admin", "worker", "notifier", "rollout", "sink", "retrain", "console", "ingest")
PASSWORDS = {user: secrets.token_hex(16) for user in USERS}
OTHERS = ("worker", "rollout", "sink", "retrain", "console", "ingest")  # every principal but the notifier and admin


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    ca: Path
    run_dir: Path

    def login(self, user: str) -> Settings:
        """Settings of a service logged in as ``user``, with compose's topic names (the default prefix)."""
        return Settings().updated(
            run_dir=self.run_dir / user, kafka__bootstrap=self.bootstrap, kafka__security_protocol="SASL_SSL",
            kafka__sasl_mechanism="SCRAM-SHA-512", kafka__sasl_username=user,
            kafka__sasl_password=SecretStr(PASSWORDS[user]), kafka__ssl_cafile=self.ca,
        )


def local_properties(template: str, port: int, controller: int, tls: Path, data: Path) -> str:
    """Compose's server.properties on loopback ports and temp paths; every other line as compose has it."""
    moves = {"SASL_SSL://:9092": f"SASL_SSL://127.0.0.1:{port}", "SASL_SSL://kafka:9092": f"SASL_SSL://127.0.0.1:{port}",
             "127.0.0.1:9093": f"127.0.0.1:{controller}", "/etc/kafka/tls": str(tls), "/var/lib/kafka/data": str(data)}
    for old, new in moves.items():
        assert old in template, old
        template = template.replace(old, new)
    return template


def _shims(bin_dir: Path, lib: Path, log4j: Path) -> None:
    """The two kafka-*.sh scripts start-broker.sh runs, over the Maven jars the local stack uses."""
    java = f'exec java -Dlog4j.configuration=file:{log4j} -cp "{lib}/*"'
    bin_dir.mkdir()
    for name, main in (("kafka-storage.sh", "kafka.tools.StorageTool"), ("kafka-server-start.sh", "kafka.Kafka")):
        (bin_dir / name).write_text(f'#!/bin/sh\n{java} {main} "$@"\n')
        (bin_dir / name).chmod(0o755)


def run_setup(admin: Settings) -> str:
    result = subprocess.run([sys.executable, str(KAFKA_DIR / "kafka_setup.py"), str(KAFKA_DIR / "acls.txt")],
                            env=worker_env(admin), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    d = tmp_path_factory.mktemp("compose-kafka")
    lib = ensure_kafka_jars(Settings().updated(run_dir=REPO / ".tonewatch"))
    subprocess.run(["sh", str(KAFKA_DIR / "make-certs.sh"), str(d / "tls")], check=True, capture_output=True)
    port = free_port()
    template = local_properties((KAFKA_DIR / "server.properties").read_text(), port, free_port(),
                                d / "tls" / "broker", d / "data")
    (d / "server.properties").write_text(template)
    (d / "log4j.properties").write_text(f"log4j.rootLogger=WARN, file\nlog4j.appender.file=org.apache.log4j."
                                        f"FileAppender\nlog4j.appender.file.File={d / 'server.log'}\nlog4j.appender."
                                        "file.layout=org.apache.log4j.PatternLayout\n")
    _shims(d / "bin", lib, d / "log4j.properties")
    env = {**os.environ, "KAFKA_BIN": str(d / "bin"), "KAFKA_TEMPLATE": str(d / "server.properties"),
           "KAFKA_RUN_DIR": str(d / "run"), **{f"KAFKA_{u.upper()}_PASSWORD": p for u, p in PASSWORDS.items()}}
    log_path = d / "broker.out"
    pid = spawn(["bash", str(KAFKA_DIR / "start-broker.sh")], log_path, env=env)
    found = Broker(f"127.0.0.1:{port}", d / "tls" / "ca" / "ca.pem", d)
    admin = found.login("admin")

    def answers() -> bool:
        client = KafkaAdminClient(**client_config(admin.kafka), request_timeout_ms=5000)
        try:
            return isinstance(client.list_topics(), list)
        finally:
            client.close()

    try:
        wait_ready("kafka", pid, log_path, answers, 120)
        run_setup(admin)
        yield found
    finally:
        stop(pid, timeout_s=30)


def _acls(admin: Settings) -> set[ACL]:
    client = KafkaAdminClient(**client_config(admin.kafka))
    try:
        acls, error = client.describe_acls(_kafka_setup().every_acl())
    finally:
        client.close()
    assert error.errno == 0, error
    return set(acls)


def _wait_acls(admin: Settings, expected: set[ACL]) -> None:
    """Until the broker lists ``expected``: it applies ACLs from its metadata log a moment after they commit."""
    deadline = time.monotonic() + 20
    while (found := _acls(admin)) != expected:
        assert time.monotonic() < deadline, (found - expected, expected - found)
        time.sleep(0.5)


def _send(settings: Settings, topic: str, key: str, value: bytes) -> None:
    prod = producer(settings.kafka)
    try:
        prod.send(settings.kafka.topic(topic), key=key.encode(), value=value).get(timeout=20)
    finally:
        prod.close()


def _read(settings: Settings, topic: str) -> list[bytes]:
    return [r.value for r in iter_topic(settings.kafka, settings.kafka.topic(topic), idle_timeout_s=3.0)]


def _describe_error(settings: Settings, topic: str) -> int:
    """The broker's error code for this login's request of the topic's metadata, by name."""
    client = KafkaAdminClient(**client_config(settings.kafka))
    try:
        [found] = client.describe_topics([settings.kafka.topic(topic)])
    finally:
        client.close()
    return int(found["error_code"])


def test_setup_leaves_exactly_the_acls_of_the_file(broker: Broker) -> None:
    admin = broker.login("admin")
    desired = _kafka_setup().parse_acls((KAFKA_DIR / "acls.txt").read_text())
    _wait_acls(admin, desired)
    # an ACL added by hand does not outlive the next setup
    stray = ACL("User:intruder", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                ResourcePattern(ResourceType.TOPIC, "tonewatch.subscriptions"))
    client = KafkaAdminClient(**client_config(admin.kafka))
    try:
        assert not client.create_acls([stray])["failed"]
    finally:
        client.close()
    _wait_acls(admin, desired | {stray})
    assert "removed 1" in run_setup(admin)
    _wait_acls(admin, desired)


def test_no_principal_but_admin_adds_a_webhook_and_only_the_notifier_reads_them(broker: Broker) -> None:
    hook = b'{"id": "s1", "url": "https://receiver.example/hook"}'
    _send(broker.login("admin"), "subscriptions", "s1", hook)
    for user in OTHERS:
        with pytest.raises(TopicAuthorizationFailedError):
            _send(broker.login(user), "subscriptions", "evil", b'{"id": "evil", "url": "https://attacker.example/"}')
    assert hook in _read(broker.login("notifier"), "subscriptions")
    for user in OTHERS:
        settings = broker.login(user)
        if user == "console":  # it may see that the topic exists, not read it
            assert _describe_error(settings, "subscriptions") == 0
            with pytest.raises(TopicAuthorizationFailedError):
                _read(settings, "subscriptions")
        else:  # the topic is not even listed to them: nothing to read, and asking for it is refused
            assert _read(settings, "subscriptions") == [], user
            assert _describe_error(settings, "subscriptions") == TopicAuthorizationFailedError.errno, user
    assert _read(broker.login("admin"), "subscriptions") == [hook]


def test_the_cli_paths_of_console_rollout_and_retrain_work_under_their_principals(broker: Broker) -> None:
    from models.feedback import make_feedback, publish, read_feedback
    from models.rollout import events
    from tonewatch.notify.store import acknowledge

    console = broker.login("console")
    acknowledge(console, "alert-1", "analyst", None)  # checks the delivery topics exist: Describe is enough
    publish(console, [make_feedback(message_id="m1", model="sentiment", label="negative", text="guidance cut",
                                    by="analyst")])
    assert [f.message_id for f in read_feedback(broker.login("retrain"))] == ["m1"]
    events.publish(broker.login("rollout"), "sentiment", 1, "promoted", reason="acl test")
    assert events.current_routes(broker.login("retrain"))["sentiment"].production == 1
    with pytest.raises(TopicAuthorizationFailedError):  # the console cannot steer a rollout
        _send(console, "model-events", "sentiment", b'{"model": "sentiment"}')


def _wait_log(path: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, path.read_text(errors="replace")[-3000:]
        time.sleep(0.5)


def test_the_worker_and_the_notifier_run_under_their_principals(broker: Broker, tmp_path: Path) -> None:
    from tonewatch.perf.trivial import start_trivial_triton
    from tonewatch.stack.triton import stop_triton

    triton, served = start_trivial_triton(Settings().updated(run_dir=tmp_path / "run"), tmp_path / "triton")
    notifier_log = tmp_path / "notifier.log"
    notifier_env = worker_env(broker.login("notifier").updated(delivery__metrics_port=free_port()))
    with notifier_log.open("wb") as log:
        notifier = subprocess.Popen([sys.executable, "-m", "tonewatch", "notifier"], env=notifier_env,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    worker = None
    try:
        _wait_log(notifier_log, "notifier ready", notifier)
        settings = broker.login("worker").updated(
            triton__grpc_url=served.triton.grpc_url, triton__http_url=served.triton.http_url,
            triton__model_env_path=served.triton.model_env_path, scoring__metrics_port=free_port())
        worker = Worker(settings, tmp_path / "worker.log")
        worker.wait_ready()
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        for i in range(20):
            _send(broker.login("ingest"), "news", f"n{i}",
                  f'{{"id": "n{i}", "source": "news", "ts": "{now}", "text": "$AAPL guidance cut {i}"}}'.encode())
        admin = broker.login("admin")
        assert {r["id"] for r in wait_for(admin, "scored", 20, worker, timeout_s=120)} == {f"n{i}" for i in range(20)}
        # the windows agent (Faust) folded them into its table: its changelog topic is the worker's own
        deadline = time.monotonic() + 60
        while topic_size(admin.kafka, state_changelog(admin)) == 0:
            assert time.monotonic() < deadline and worker.alive(), worker.log_tail()
            time.sleep(1.0)
        assert not re.search(r"AuthorizationFailed|AuthorizationException", worker.log_path.read_text())
        assert notifier.poll() is None, notifier_log.read_text()[-3000:]
    finally:
        if worker is not None:
            worker.stop()
        notifier.terminate()
        notifier.wait(timeout=30)
        stop_triton(triton)


def test_the_sink_stores_under_its_principal(broker: Broker, tmp_path: Path) -> None:
    """The sink's librdkafka consumer (tonewatch/core/rdkafka.py) logs in with SCRAM over verified TLS, reads what
    its ACLs allow, and commits its group's offsets."""
    import threading

    from tests.integration.postgres import running_postgres
    from tonewatch.store.sink import create_sink_metrics, run_sink

    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    scored = {"id": "acl-1", "ts": now, "source": "chat", "text": "$TSLA dumping", "sentiment": "negative",
              "sentiment_probs": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}, "topic": "Stock Movement",
              "topic_probs": {"Stock Movement": 1.0}, "tickers": ["TSLA"], "model_versions": {"sentiment": "1"}}
    _send(broker.login("worker"), "scored", "acl-1", json.dumps(scored).encode())
    with running_postgres(tmp_path / "pg") as pg:
        settings = broker.login("sink").updated(store__dsn=SecretStr(pg.dsn))
        metrics, stop_sink = create_sink_metrics(), threading.Event()
        thread = threading.Thread(target=run_sink, args=(settings, metrics, stop_sink.is_set), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not _stored(pg.dsn, "acl-1"):  # with the worker test's messages, when it ran first
                assert thread.is_alive() and time.monotonic() < deadline, "the sink stored nothing"
                time.sleep(0.5)
        finally:
            stop_sink.set()
            thread.join(30)
        assert not thread.is_alive() and _stored(pg.dsn, "acl-1") == [["TSLA"]]
        assert metrics.registry.get_sample_value("tonewatch_sink_errors_total", {"reason": "database"}) == 0


def _stored(dsn: str, message_id: str) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT tickers FROM messages WHERE id = %s", (message_id,))]
        except psycopg.errors.UndefinedTable:  # not migrated yet
            return []
