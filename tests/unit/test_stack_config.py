"""Local-stack configuration that must be right before any process starts."""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.triton_admin import load_config
from tonewatch.core.settings import Settings
from tonewatch.stack.kafka import server_properties
from tonewatch.stack.state import StackState, read_state, write_state
from tonewatch.stack.triton import assemble_backends, find_install, server_env

REPO = Path(__file__).resolve().parents[2]


def test_kafka_listens_on_loopback_only_and_keeps_replayed_history(tmp_path: Path) -> None:
    props = dict(
        line.split("=", 1) for line in server_properties(tmp_path, 19092, 19093).splitlines() if "=" in line
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["process.roles"] == "broker,controller"
    assert props["log.retention.ms"] == "-1"


def test_backend_dir_gets_the_stub_for_this_python(tmp_path: Path) -> None:
    install = find_install()
    assert install.stub.parent.name == f"{sys.version_info.major}.{sys.version_info.minor}"
    backends = assemble_backends(install, tmp_path / "backends")
    stub = backends / "python" / "triton_python_backend_stub"
    assert stub.read_bytes() == install.stub.read_bytes() and stub.stat().st_mode & 0o111
    assert (backends / "python" / "libtriton_python.so").is_file()


def test_triton_env_puts_this_libpython_first() -> None:
    import sysconfig

    paths = server_env(find_install())["LD_LIBRARY_PATH"].split(":")
    assert paths[0] == sysconfig.get_config_var("LIBDIR")
    assert any(p.endswith("nvidia_pytriton.libs") for p in paths)


def test_load_config_injects_the_local_env_only_when_asked(tmp_path: Path) -> None:
    base = Settings().updated(triton__model_repository=REPO / "triton_repo")
    assert "EXECUTION_ENV_PATH" not in json.loads(load_config(base, "sentiment")).get("parameters", {})
    local = base.updated(triton__model_env_path=Path(sys.prefix))
    cfg = json.loads(load_config(local, "sentiment"))
    assert cfg["parameters"]["EXECUTION_ENV_PATH"]["string_value"] == str(Path(sys.prefix).resolve())
    assert cfg["max_batch_size"] == 64 and cfg["input"][0]["data_type"] == "TYPE_STRING"
    assert "threads" not in cfg["parameters"]
    threaded = json.loads(load_config(local.updated(triton__cpu_threads=1), "sentiment"))
    assert threaded["parameters"]["threads"]["string_value"] == "1"
    assert "instance_group" not in threaded  # Triton's default: one instance per GPU, else one on CPU
    two = json.loads(load_config(local.updated(triton__cpu_instances=2), "topic"))
    assert two["instance_group"] == [{"kind": "KIND_CPU", "count": 2}]


def test_settings_read_the_stack_state_but_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(tmp_path, StackState(endpoints={"kafka_bootstrap": "127.0.0.1:1111", "triton_grpc_url": "x:1"},
                                     pids={}, logs={}))
    assert read_state(tmp_path) is not None
    monkeypatch.setenv("TONEWATCH_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("TONEWATCH_TRITON__GRPC_URL", "127.0.0.1:2222")
    s = Settings()
    assert s.kafka.bootstrap == "127.0.0.1:1111"  # from the state file
    assert s.triton.grpc_url == "127.0.0.1:2222"  # env beats the state file
    assert Settings().updated(kafka__bootstrap="k:1").kafka.bootstrap == "k:1"  # arguments beat both


def test_worker_and_cli_clients_share_the_kafka_security_settings() -> None:
    from streams.app import broker_credentials
    from tonewatch.core.kafka_io import client_config

    plain = Settings()
    assert broker_credentials(plain) is None and client_config(plain.kafka)["security_protocol"] == "PLAINTEXT"
    sasl = Settings().updated(kafka__security_protocol="SASL_SSL", kafka__sasl_mechanism="SCRAM-SHA-512",
                    kafka__sasl_username="svc", kafka__sasl_password="s3cret")
    creds = broker_credentials(sasl)
    assert creds.username == "svc" and creds.password == "s3cret" and creds.ssl_context is not None
    assert str(creds.mechanism.value) == "SCRAM-SHA-512"
    conf = client_config(sasl.kafka)
    assert conf["sasl_plain_password"] == "s3cret" and conf["security_protocol"] == "SASL_SSL"
    assert "s3cret" not in repr(sasl)  # secrets never show in logs of the settings object
    assert conf["ssl_context"].verify_mode == ssl.CERT_REQUIRED and conf["ssl_context"].check_hostname


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"kafka__security_protocol": "SASL_SSL", "kafka__sasl_mechanism": "PLAIN"}, "needs kafka.sasl_mechanism"),
    ({"kafka__sasl_mechanism": "PLAIN", "kafka__sasl_username": "u", "kafka__sasl_password": "p"}, "use SASL_SSL"),
    ({"kafka__ssl_cafile": "/etc/ca.pem"}, "TLS files are set"),
    ({"kafka__security_protocol": "SSL", "kafka__ssl_certfile": "/c.pem"}, "go together"),
    ({"kafka__security_protocol": "TLS"}, "security_protocol"),
])
def test_half_configured_kafka_security_is_refused_at_start(kwargs: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings().updated(**kwargs)


def test_protocol_and_mechanism_are_case_insensitive() -> None:
    s = Settings().updated(kafka__security_protocol="sasl_plaintext", kafka__sasl_mechanism="scram-sha-256",
                 kafka__sasl_username="u", kafka__sasl_password="p")
    assert (s.kafka.security_protocol, s.kafka.sasl_mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")
    from tonewatch.core.kafka_io import ssl_context

    assert ssl_context(s.kafka) is None  # SASL without TLS


def test_cli_settings_errors_are_one_line_without_secrets(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tonewatch.cli import main

    monkeypatch.setenv("TONEWATCH_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TONEWATCH_KAFKA__SASL_PASSWORD", "hunter2-secret")
    monkeypatch.setattr("sys.argv", ["tonewatch", "status"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("tonewatch: invalid settings:") and "needs kafka.sasl" in err
    assert "hunter2-secret" not in err  # pydantic's own message would print every input value


def test_kafka_failure_names_the_refused_login_not_the_follow_on_error() -> None:
    from kafka.errors import IncompatibleBrokerVersion

    from tonewatch.cli import kafka_failure

    s = Settings().updated(kafka__bootstrap="k:9093", kafka__security_protocol="SASL_SSL",
                           kafka__sasl_mechanism="PLAIN",
                 kafka__sasl_username="svc", kafka__sasl_password="pw-123")
    line = kafka_failure(s, IncompatibleBrokerVersion("MetadataRequest_v0"), "SaslAuthenticationFailedError (bad)")
    assert line.startswith("tonewatch: cannot use Kafka at k:9093 (SASL_SSL, PLAIN as 'svc'): "
                           "SaslAuthenticationFailedError (bad). Check")
    assert "pw-123" not in line and "\n" not in line


@pytest.mark.parametrize("certfile", [None, "client.crt"])
def test_kafka_failure_says_whether_a_refused_client_certificate_was_sent(tmp_path: Path, certfile: str | None) -> None:
    from tonewatch.cli import kafka_failure

    s = Settings().updated(kafka__bootstrap="k:9093", kafka__security_protocol="SSL")
    if certfile:
        key = tmp_path / "client.key"
        s = s.updated(kafka__ssl_certfile=tmp_path / certfile, kafka__ssl_keyfile=key)
    alert = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate (_ssl.c:2580)")
    line = kafka_failure(s, alert)
    assert line.startswith("tonewatch: cannot use Kafka at k:9093 (SSL): SSLError: ")
    if certfile:
        assert f"refused the client certificate {tmp_path / certfile}" in line
    else:
        assert "requires a client certificate and none was sent" in line
    assert "\n" not in line
    assert kafka_failure(s, ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] x")).count("client certificate") == 0


def test_empty_variables_from_compose_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose.yml passes optional settings as ``${VAR:-}``: an empty mechanism is no mechanism."""
    for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"):
        monkeypatch.setenv(f"TONEWATCH_{name}", "")
    s = Settings()
    assert s.kafka.sasl_mechanism is None and s.kafka.sasl_password is None and s.kafka.ssl_cafile is None


def test_free_port_never_hands_out_a_port_twice() -> None:
    """A port picked for a receiver that is started later must not go to the next server too."""
    from tonewatch.stack.procs import free_port

    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_the_store_dsn_travels_in_the_state_file_and_status_hides_its_password(tmp_path: Path) -> None:
    from tonewatch.stack import status

    dsn = "postgresql://postgres:s3cret@127.0.0.1:5544/tonewatch"
    local = Settings(run_dir=tmp_path).updated(store__dsn=dsn)
    write_state(tmp_path, StackState(endpoints=local.endpoints(), pids={}, logs={}))
    assert Settings(run_dir=tmp_path).with_endpoints(read_state(tmp_path).endpoints).store.dsn.get_secret_value() \
        == dsn  # type: ignore[union-attr]
    shown = json.dumps(status(Settings(run_dir=tmp_path)))
    assert "s3cret" not in shown and "postgresql://postgres:***@127.0.0.1:5544/tonewatch" in shown
    assert "store_dsn" not in Settings().endpoints()  # no store: nothing recorded, not the text "None"
