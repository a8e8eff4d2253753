"""Kafka over SASL_SSL against a real broker with a private CA.

The worker (Faust and its aiokafka model-events follower) logs in with SCRAM-SHA-512, the CLI's
kafka-python clients with PLAIN; both verify the broker's certificate against ``kafka_ssl_cafile``.
A wrong password or an unknown CA stops the worker in seconds with one line naming the cause, and
no password reaches a log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.integration.conftest import REPO, Worker, wait_for
from tonewatch.settings import Settings
from tonewatch.stack import worker_env
from tonewatch.stack.kafka import SecureListener, start_kafka, stop_kafka
from tonewatch.stack.procs import free_port

USER, PASSWORD = "tonewatch-svc", "s3cret-Pa55-for-tests"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> tuple[Path, Path]:
    """A throwaway CA and a broker certificate for 127.0.0.1; returns (CA PEM, broker key+chain PEM)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=tonewatch-test-ca", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "broker.crt", "-days", "2", "-extfile", "san.cnf", cwd=d)
    keystore = d / "broker.pem"
    keystore.write_text((d / "broker.key").read_text() + (d / "broker.crt").read_text())
    return d / "ca.pem", keystore


@pytest.fixture(scope="module")
def secure(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A second broker whose only client listener is SASL_SSL; settings for it, Triton from the session stack."""
    d = tmp_path_factory.mktemp("secure-kafka")
    ca, keystore = make_certs(d)
    kafka = start_kafka(stack_settings, d / "kafka", secure=SecureListener(free_port(), keystore, {USER: PASSWORD}))
    try:
        assert kafka.secure_bootstrap is not None
        yield stack_settings.model_copy(update={
            "kafka_bootstrap": kafka.secure_bootstrap, "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": USER,
            "kafka_sasl_password": SecretStr(PASSWORD), "kafka_ssl_cafile": ca,
            "topic_prefix": f"sec{uuid.uuid4().hex[:8]}", "metrics_port": free_port(),
        })
    finally:
        stop_kafka(kafka)


def _cli(settings: Settings, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tonewatch", *args], env=worker_env(settings), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s)


def test_worker_and_cli_over_sasl_ssl(secure: Settings, tmp_path: Path) -> None:
    worker = Worker(secure, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        feed = tmp_path / "feed.jsonl"
        lines = [{"id": f"sec-{i}", "source": "chat" if i % 2 else "news", "ts": now,
                  "text": f"$AAPL guidance cut again, call me on +1 415 555 01{i:02d}"} for i in range(20)]
        feed.write_text("".join(json.dumps(m) + "\n" for m in lines))
        cli = secure.model_copy(update={"kafka_sasl_mechanism": "PLAIN"})  # the other mechanism, same user
        replayed = _cli(cli, "replay", str(feed))
        assert replayed.returncode == 0, replayed.stderr
        scored = wait_for(secure, "scored", 20, worker, timeout_s=180)
        assert {r["id"] for r in scored} == {m["id"] for m in lines}
        assert all("555" not in r["text"] for r in scored if r["source"] == "chat")  # masked on the secure path too
        samples = worker.metrics()
        assert sum(v for k, v in samples.items() if k.startswith("tonewatch_messages_scored_total")) == 20
    finally:
        worker.stop()
    for text in (worker.log_path.read_text(errors="replace"), replayed.stdout, replayed.stderr):
        assert PASSWORD not in text


@pytest.mark.parametrize("case", ["wrong password", "unknown CA"])
def test_refused_connection_stops_the_worker_with_one_clear_line(secure: Settings, case: str) -> None:
    if case == "wrong password":
        bad = secure.model_copy(update={"kafka_sasl_password": SecretStr("not-" + PASSWORD)})
        cause = "Authentication failed"
    else:
        bad, cause = secure.model_copy(update={"kafka_ssl_cafile": None}), "CERTIFICATE_VERIFY_FAILED"
    result = _cli(bad, "worker", timeout_s=90)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tonewatch: cannot use Kafka at {secure.kafka_bootstrap} (SASL_SSL, SCRAM-SHA-512")
    assert cause in last  # the reason itself, not kafka-python's follow-on protocol error
    assert PASSWORD not in result.stdout + result.stderr
