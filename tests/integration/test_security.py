"""Kafka over SASL_SSL and over mTLS against a real broker with a private CA.

The worker (Faust, its aiokafka score stage and model-events follower) logs in with SCRAM-SHA-512, the
CLI's kafka-python clients with PLAIN; both verify the broker's certificate against ``kafka_ssl_cafile``.
On the SSL listener that requires client certificates, both present ``kafka_ssl_certfile``. A wrong
password, an unknown CA or a missing client certificate stops the worker in seconds with one line naming
the cause, and no password reaches a log.
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
from tonewatch.core.settings import Settings
from tonewatch.stack import worker_env
from tonewatch.stack.kafka import KafkaProcess, SecureListener, start_kafka, stop_kafka
from tonewatch.stack.procs import free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "tonewatch-svc", "s3cret-Pa55-for-tests"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(d: Path, name: str, subject: str, extfile: str | None = None) -> None:
    """``name``.key and ``name``.crt, signed by the test CA."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=d)
    ext = ["-extfile", extfile] if extfile else []
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)


def make_certs(d: Path) -> tuple[Path, Path]:
    """A throwaway CA, a broker certificate for 127.0.0.1 and a client certificate (client.key, client.crt);
    returns (CA PEM, broker key+chain PEM)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=tonewatch-test-ca", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _signed(d, "broker", "/CN=127.0.0.1", "san.cnf")
    _signed(d, "client", "/CN=tonewatch-worker")
    keystore = d / "broker.pem"
    keystore.write_text((d / "broker.key").read_text() + (d / "broker.crt").read_text())
    return d / "ca.pem", keystore


@pytest.fixture(scope="module")
def broker(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaProcess, Path]]:
    """A second broker whose client listeners are SASL_SSL and mTLS; the broker and its certificates' folder."""
    d = tmp_path_factory.mktemp("secure-kafka")
    ca, keystore = make_certs(d)
    listener = SecureListener(free_port(), keystore, {USER: PASSWORD}, mtls_port=free_port(), client_ca=ca)
    kafka = start_kafka(stack_settings, d / "kafka", secure=listener)
    try:
        yield kafka, d
    finally:
        stop_kafka(kafka)


def _listener(stack_settings: Settings, bootstrap: str | None, prefix: str, **connection: object) -> Settings:
    """Settings for one of the broker's secure listeners, on topics of their own; Triton from the session stack."""
    assert bootstrap is not None
    return stack_settings.updated(kafka__bootstrap=bootstrap, **connection,
                                             kafka__topic_prefix=f"{prefix}{uuid.uuid4().hex[:8]}",
                                             scoring__metrics_port=free_port())


@pytest.fixture(scope="module")
def secure(stack_settings: Settings, broker: tuple[KafkaProcess, Path]) -> Settings:
    kafka, d = broker
    return _listener(stack_settings, kafka.secure_bootstrap, "sec", kafka__security_protocol="SASL_SSL",
                     kafka__sasl_mechanism="SCRAM-SHA-512", kafka__sasl_username=USER,
                     kafka__sasl_password=SecretStr(PASSWORD), kafka__ssl_cafile=d / "ca.pem")


@pytest.fixture(scope="module")
def mtls(stack_settings: Settings, broker: tuple[KafkaProcess, Path]) -> Settings:
    """The listener that requires a client certificate."""
    kafka, d = broker
    return _listener(stack_settings, kafka.mtls_bootstrap, "mtls", kafka__security_protocol="SSL",
                     kafka__ssl_cafile=d / "ca.pem", kafka__ssl_certfile=d / "client.crt",
                     kafka__ssl_keyfile=d / "client.key")


def _cli(settings: Settings, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tonewatch", *args], env=worker_env(settings), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s)


def _score_through(settings: Settings, cli: Settings, tmp_path: Path) -> list[str]:
    """A worker on ``settings`` scores 20 messages the CLI replays with ``cli``; returns the texts to search for
    secrets (the worker log and the CLI's output)."""
    worker = Worker(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        feed = tmp_path / "feed.jsonl"
        lines = [{"id": f"sec-{i}", "source": "chat" if i % 2 else "news", "ts": now,
                  "text": f"$AAPL guidance cut again, call me on +1 415 555 01{i:02d}"} for i in range(20)]
        feed.write_text("".join(json.dumps(m) + "\n" for m in lines))
        replayed = _cli(cli, "replay", "--no-wait", str(feed))
        assert replayed.returncode == 0, replayed.stderr
        scored = wait_for(settings, "scored", 20, worker, timeout_s=180)
        assert {r["id"] for r in scored} == {m["id"] for m in lines}
        assert all("555" not in r["text"] for r in scored if r["source"] == "chat")  # masked on the secure path too
        samples = worker.metrics()
        assert sum(v for k, v in samples.items() if k.startswith("tonewatch_messages_scored_total")) == 20
    finally:
        worker.stop()
    return [worker.log_path.read_text(errors="replace"), replayed.stdout, replayed.stderr]


def test_worker_and_cli_over_sasl_ssl(secure: Settings, tmp_path: Path) -> None:
    cli = secure.updated(kafka__sasl_mechanism="PLAIN")  # the other mechanism, same user
    for text in _score_through(secure, cli, tmp_path):
        assert PASSWORD not in text


def test_worker_and_cli_over_mtls(mtls: Settings, tmp_path: Path) -> None:
    texts = _score_through(mtls, mtls, tmp_path)
    key = mtls.kafka.ssl_keyfile
    assert key is not None
    secret = key.read_text().splitlines()[1]  # a line of the private key itself
    assert all(secret not in text for text in texts)


@pytest.mark.parametrize("case", ["wrong password", "unknown CA"])
def test_refused_connection_stops_the_worker_with_one_clear_line(secure: Settings, case: str) -> None:
    if case == "wrong password":
        bad = secure.updated(kafka__sasl_password=SecretStr("not-" + PASSWORD))
        cause = "Authentication failed"
    else:
        bad, cause = secure.updated(kafka__ssl_cafile=None), "CERTIFICATE_VERIFY_FAILED"
    result = _cli(bad, "worker", timeout_s=90)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tonewatch: cannot use Kafka at {secure.kafka.bootstrap} (SASL_SSL, SCRAM-SHA-512")
    assert cause in last  # the reason itself, not kafka-python's follow-on protocol error
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("case", ["no client certificate", "untrusted client certificate"])
def test_refused_client_certificate_stops_the_worker_with_one_clear_line(mtls: Settings, tmp_path: Path,
                                                                         case: str) -> None:
    if case == "no client certificate":
        bad, hint = mtls.updated(kafka__ssl_certfile=None, kafka__ssl_keyfile=None), "none was sent"
    else:  # self-signed: the broker trusts only the test CA
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out", "rogue.crt",
                 "-days", "2", "-subj", "/CN=rogue", cwd=tmp_path)
        bad = mtls.updated(kafka__ssl_certfile=tmp_path / "rogue.crt",
                                      kafka__ssl_keyfile=tmp_path / "rogue.key")
        hint = f"refused the client certificate {tmp_path / 'rogue.crt'}"
    result = _cli(bad, "worker", timeout_s=90)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tonewatch: cannot use Kafka at {mtls.kafka.bootstrap} (SSL): SSLError: "), last
    assert hint in last, last


def test_kafka_python_clients_connect_reliably_over_mtls(mtls: Settings) -> None:
    """kafka-python closes a TLS 1.3 mTLS connection when post-handshake data arrives with no request in
    flight: 8-14 of 60 fresh clients failed (3 runs) before ``client_config`` capped them at TLS 1.2."""
    from kafka.admin import KafkaAdminClient

    from tonewatch.core.kafka_io import client_config

    failures = []
    for i in range(60):
        admin = None
        try:
            admin = KafkaAdminClient(**client_config(mtls.kafka), client_id=f"mtls-{i}", request_timeout_ms=10_000)
            admin.list_topics()
            admin.describe_cluster()
        except Exception as exc:  # counted and shown, not swallowed
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            if admin is not None:
                admin.close()
    assert failures == [], f"{len(failures)} of 60 clients failed"
