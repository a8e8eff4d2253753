"""docker-compose.yml's trust boundaries: what is published, who may load models, who may use which topic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from models.triton_admin import ADMIN_HEADER, admin_headers
from tonewatch.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PUBLIC = {"grafana"}  # on every interface; the analyst console is on loopback, behind the operator's TLS proxy
ADMIN_APIS = {"model-repository", "shared-memory"}  # loading a model runs its model.py; shm maps memory
TRITON_APIS = {"health", "metadata", "inference", "shared-memory", "model-config", "model-repository", "statistics",
               "trace", "logging"}  # `tritonserver --help`
KEY_VAR = "TONEWATCH_TRITON__ADMIN_KEY"


def _services() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def _host_ip(entry: str | dict[str, Any]) -> str | None:
    """The interface a ``ports:`` entry binds on the host; None means every interface."""
    if isinstance(entry, dict):  # long syntax
        return entry.get("host_ip")
    parts = str(entry).rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def test_only_grafana_is_published_on_every_interface() -> None:
    services = _services()
    assert services["grafana"]["ports"], "Grafana is what users open"
    for name, svc in services.items():
        for entry in svc.get("ports", []):
            if name not in PUBLIC:
                assert _host_ip(entry) == "127.0.0.1", f"{name} publishes {entry} beyond the host's loopback"
    # no host port at all: reached only over the compose network
    for name in ("triton", "alertmanager", "kafka", "postgres", "sink"):
        assert "ports" not in services[name], name
    assert [_host_ip(p) for p in services["prometheus"]["ports"]] == ["127.0.0.1"]
    assert services["console"]["ports"] == ["127.0.0.1:8088:8088"]
    grafana = services["grafana"]["environment"]  # what is published asks for a login
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def _restricted(command: list[str], flag: str) -> tuple[set[str], str, str]:
    """(apis, header, value) of ``--flag=<api>,<api>:<header>=<value>`` (Triton's syntax)."""
    values = [c.split("=", 1)[1] for c in command if c.startswith(f"--{flag}=")]
    assert len(values) == 1, f"triton's command needs exactly one --{flag}: {command}"
    match = re.fullmatch(r"([a-z,-]+):([A-Za-z0-9-]+)=(.+)", values[0])
    assert match, values[0]
    return set(match[1].split(",")), match[2], match[3]


def test_triton_restricts_model_loading_to_a_key_from_the_environment() -> None:
    command = _services()["triton"]["command"]
    assert "--model-control-mode=explicit" in command
    for flag in ("http-restricted-api", "grpc-restricted-protocol"):
        apis, header, value = _restricted(command, flag)
        assert ADMIN_APIS <= apis <= TRITON_APIS, apis
        assert not apis & {"inference", "health", "metadata", "model-config"}, "the worker's APIs stay open"
        assert header == ADMIN_HEADER  # the header the loader sends
        # from the environment, required: no default a deployment could run on
        assert re.fullmatch(rf"\$\{{{KEY_VAR}:\?[^}}]+\}}", value), value


def test_only_the_loader_holds_the_triton_key() -> None:
    holders = {name for name, svc in _services().items()
               if isinstance(svc.get("environment"), dict) and KEY_VAR in svc["environment"]}
    assert holders == {"models-sync"}
    assert _services()["models-sync"]["environment"][KEY_VAR].startswith(f"${{{KEY_VAR}:?")


def test_loader_sends_the_key_it_holds() -> None:
    assert admin_headers(Settings().triton) is None  # the local stack's Triton is not restricted
    keyed = Settings().updated(triton__admin_key=SecretStr("k3y"))
    assert admin_headers(keyed.triton) == {ADMIN_HEADER: "k3y"}
    assert "k3y" not in repr(keyed.triton)


# --- PostgreSQL: no host port, the sink writes as the owner, Grafana reads as a SELECT-only role ---------------

OWNER_VAR, READER_VAR, CONSOLE_VAR = "POSTGRES_PASSWORD", "POSTGRES_GRAFANA_PASSWORD", "POSTGRES_CONSOLE_PASSWORD"
READER, CONSOLE_ROLE = "grafana_reader", "tonewatch_console"
POSTGRES_DIR = REPO / "deploy" / "postgres"


def _holders(var: str) -> set[str]:
    """Services whose environment interpolates ``${var}`` (with or without a ``:?`` message)."""
    pattern = re.compile(rf"\$\{{{var}[:}}]")
    return {name for name, svc in _services().items() if isinstance(svc.get("environment"), dict)
            and any(pattern.search(str(value)) for value in svc["environment"].values())}


def _store_dsn(service: str, var: str) -> Any:
    """The service's TONEWATCH_STORE__DSN as compose interpolates it, with ``var``'s value as SECRET."""
    from urllib.parse import urlsplit

    services = _services()
    raw = services[service]["environment"]["TONEWATCH_STORE__DSN"]
    dsn = urlsplit(re.sub(rf"\$\{{{var}:\?[^}}]+\}}", "SECRET", raw))
    database = f"/{services['postgres']['environment']['POSTGRES_DB']}"
    assert (dsn.scheme, dsn.hostname, dsn.port, dsn.path) == ("postgresql", "postgres", 5432, database), raw
    return dsn


def test_only_the_sink_holds_the_owner_password_and_grafana_the_readers() -> None:
    services = _services()
    assert _holders(OWNER_VAR) == {"postgres", "sink"}
    assert _holders(READER_VAR) == {"postgres", "grafana"}  # postgres: its init script creates the role
    postgres = services["postgres"]["environment"]
    assert postgres[OWNER_VAR].startswith(f"${{{OWNER_VAR}:?")  # required: no default to run on
    assert services["grafana"]["environment"][READER_VAR].startswith(f"${{{READER_VAR}:?")
    assert {n for n, s in services.items() if "TONEWATCH_STORE__DSN" in s.get("environment", {})} == {
        "sink", "console"}
    dsn = _store_dsn("sink", OWNER_VAR)  # the password is the owner's, from the environment
    assert (dsn.username, dsn.password) == (postgres["POSTGRES_USER"], "SECRET")
    [source] = yaml.safe_load((REPO / "dashboards/provisioning/datasources/postgres.yml").read_text())["datasources"]
    assert source["user"] == READER and source["user"] != postgres["POSTGRES_USER"]
    assert source["secureJsonData"] == {"password": f"${{{READER_VAR}}}"}  # Grafana's env, never the file


def test_grafanas_role_may_only_read() -> None:
    """The init script the image runs on the first start: the reader gets SELECT on what the owner creates."""
    postgres = _services()["postgres"]
    assert "./deploy/postgres:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    scripts = sorted(POSTGRES_DIR.glob("*.sh"))
    assert [s.name for s in scripts] == ["10-grafana-reader.sh", "20-console.sh"]
    for script in scripts:
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable: the image would source it"
    sql = scripts[0].read_text()
    granted = re.findall(rf"GRANT ([A-Z, ]+) ON [^;]+ TO {READER};", sql)
    assert granted and set(", ".join(granted).split(", ")) <= {"SELECT", "USAGE", "CONNECT"}, granted
    assert f"ALTER DEFAULT PRIVILEGES FOR ROLE :\"owner\" GRANT SELECT ON TABLES TO {READER};" in sql
    assert '--set owner="$POSTGRES_USER"' in sql  # the owner is the sink's login
    assert f"ALTER ROLE {READER} SET default_transaction_read_only = on;" in sql
    assert re.search(rf"CREATE ROLE {READER} LOGIN PASSWORD :'\w+'", sql) and READER_VAR in sql


def test_only_the_console_holds_its_role_and_the_role_reads_and_writes_its_tables_alone() -> None:
    services = _services()
    assert _holders(CONSOLE_VAR) == {"postgres", "console"}  # postgres: 20-console.sh creates the role
    assert services["postgres"]["environment"][CONSOLE_VAR].startswith(f"${{{CONSOLE_VAR}:?")
    assert (_store_dsn("console", CONSOLE_VAR).username, _store_dsn("console", CONSOLE_VAR).password) == (
        CONSOLE_ROLE, "SECRET")
    sql = (POSTGRES_DIR / "20-console.sh").read_text()
    assert re.search(rf"CREATE ROLE {CONSOLE_ROLE} LOGIN PASSWORD :'\w+'", sql) and CONSOLE_VAR in sql
    granted = re.findall(rf"GRANT ([A-Z, ]+) ON [^;]+ TO {CONSOLE_ROLE};", sql)
    assert granted and set(", ".join(granted).split(", ")) <= {"SELECT", "USAGE", "CONNECT"}, granted
    # its writes: granted by the migration that creates the tables, and only there
    writes = [(m.name, g) for m in sorted((REPO / "tonewatch" / "store" / "migrations").glob("*.sql"))
              for g in re.findall(rf"GRANT ([A-Z, ]+ ON \w+) TO {CONSOLE_ROLE};", m.read_text())]
    assert writes == [("0002_console.sql", "INSERT ON audit"), ("0002_console.sql", "INSERT, UPDATE ON verdicts")]


def test_the_console_keeps_its_users_and_session_key_out_of_the_repo_and_trusts_only_the_gateway() -> None:
    import ipaddress

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    console = compose["services"]["console"]
    env = console["environment"]
    assert console["secrets"] == ["console_users"]
    assert env["TONEWATCH_CONSOLE__USERS_FILE"] == "/run/secrets/console_users"
    assert compose["secrets"]["console_users"]["file"].startswith("${TONEWATCH_CONSOLE_USERS_FILE:?")
    # the model repository read-only (the Models page), and no users file of the repo; no Triton admin key
    assert [v for v in console.get("volumes", []) if v.startswith(".")] == ["./triton_repo:/models:ro"]
    assert "TONEWATCH_TRITON__ADMIN_KEY" not in env
    assert env["TONEWATCH_CONSOLE__SESSION_SECRET"].startswith("${TONEWATCH_CONSOLE__SESSION_SECRET:?")
    # X-Forwarded-Proto (Secure cookies) and -For (the audit's address) only from the host's side of the network
    [net] = compose["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(net["gateway"]) in ipaddress.ip_network(net["subnet"])
    assert env["FORWARDED_ALLOW_IPS"] == net["gateway"]


def test_compose_runs_the_console_after_the_sinks_migrations() -> None:
    import tomllib

    from tonewatch.core.settings import Settings

    console = _services()["console"]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert console["build"]["args"]["EXTRAS"] == "[console]" and "console" in extras  # fastapi, uvicorn, argon2
    assert console["command"] == ["tonewatch", "console"]
    env, port = console["environment"], str(Settings().console.port)
    assert (env["TONEWATCH_CONSOLE__HOST"], env["TONEWATCH_CONSOLE__PORT"]) == ("0.0.0.0", port)
    assert f"127.0.0.1:{port}/healthz" in " ".join(console["healthcheck"]["test"])
    assert console["depends_on"] == {"kafka-setup": {"condition": "service_completed_successfully"},
                                     "postgres": {"condition": "service_healthy"},
                                     "sink": {"condition": "service_healthy"}}  # the sink migrates the store
    assert console["restart"] == "unless-stopped"


# --- Kafka: SASL_SSL, one principal per service, ACLs ----------------------------------------------------------

KAFKA_DIR = REPO / "deploy" / "kafka" / "compose"
TOPIC_PREFIX = "tonewatch."  # compose runs the default topic prefix
LOGINS = {"worker": "worker", "notifier": "notifier", "models-sync": "rollout", "sink": "sink", "retrain": "retrain",
          "retrain-topic": "retrain", "kafka-setup": "admin", "console": "console"}  # service -> its SCRAM user


def _kafka_setup() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("kafka_setup", KAFKA_DIR / "kafka_setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _acls() -> set[Any]:
    return _kafka_setup().parse_acls((KAFKA_DIR / "acls.txt").read_text())


def _properties(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_broker_accepts_only_scram_over_tls_and_authorizes_with_acls() -> None:
    kafka = _services()["kafka"]
    assert kafka["command"] == ["bash", "/opt/tonewatch/kafka/start-broker.sh"]
    assert "./deploy/kafka/compose:/opt/tonewatch/kafka:ro" in kafka["volumes"]
    props = _properties(KAFKA_DIR / "server.properties")
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    for listener in props["listeners"].split(","):
        name, address = listener.split("://")
        if name == props["controller.listener.names"]:  # plaintext, but only inside the container
            assert address.startswith("127.0.0.1:"), listener
        else:
            assert protocols[name] == "SASL_SSL", listener
    assert props["advertised.listeners"] == "SASL_SSL://kafka:9092"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert set(props["super.users"].split(";")) == {"User:admin", "User:ANONYMOUS"}  # ANONYMOUS: controller only
    assert props["auto.create.topics.enable"] == "false"


def test_each_service_logs_in_as_its_own_principal() -> None:
    services = _services()
    kafka_env = services["kafka"]["environment"]
    clients = {name for name, svc in services.items()
               if isinstance(svc.get("environment"), dict) and "TONEWATCH_KAFKA__BOOTSTRAP" in svc["environment"]}
    assert clients == set(LOGINS)
    principals = {acl.principal.removeprefix("User:") for acl in _acls()}
    for name, user in LOGINS.items():
        env = services[name]["environment"]
        assert env["TONEWATCH_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["TONEWATCH_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["TONEWATCH_KAFKA__SASL_USERNAME"] == user, name
        var = f"KAFKA_{user.upper()}_PASSWORD"
        assert env["TONEWATCH_KAFKA__SASL_PASSWORD"].startswith(f"${{{var}:"), name
        assert var in kafka_env, f"the broker does not create {name}'s login"
        assert user == "admin" or user in principals, f"{name} logs in as {user}, which no ACL names"
        assert "kafka-ca:/etc/tonewatch/kafka-ca:ro" in services[name]["volumes"], name
    # the broker formats its storage with exactly the ACL file's principals and admin
    users = re.search(r"^users=\(([^)]*)\)", (KAFKA_DIR / "start-broker.sh").read_text(), re.M)
    assert users and set(users[1].split()) == principals | {"admin"}
    assert {f"KAFKA_{u.upper()}_PASSWORD" for u in principals | {"admin"}} == set(kafka_env)


def _documented_principals() -> dict[str, dict[str, str]]:
    """The table under 'Kafka principals' in docs/security.md, by principal."""
    text = (REPO / "docs" / "security.md").read_text()
    section = text.split("### Kafka principals", 1)[1]
    block = next(b for b in section.split("\n\n") if b.startswith("|"))
    rows = block.splitlines()
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table = {}
    for row in rows[2:]:
        cells = dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=True))
        table[cells["principal"].strip("`")] = cells
    assert "Super user" in table.pop("admin")["also"]  # no ACLs: the broker's own login
    return table


def _topics(cell: str) -> set[str]:
    return {TOPIC_PREFIX + t.strip().strip("`") for t in cell.split(",") if t.strip() not in ("", "-")}


def test_acls_give_each_principal_exactly_the_documented_topics() -> None:
    from kafka.admin import ACLOperation, ACLResourcePatternType, ResourceType

    documented = _documented_principals()
    granted: dict[str, dict[ACLOperation, set[str]]] = {}
    others: dict[str, set[str]] = {}
    for acl in _acls():
        user, pattern = acl.principal.removeprefix("User:"), acl.resource_pattern
        if pattern.resource_type == ResourceType.TOPIC and pattern.pattern_type == ACLResourcePatternType.LITERAL:
            granted.setdefault(user, {}).setdefault(acl.operation, set()).add(pattern.resource_name)
        else:  # groups and prefixes: named in the table's last column
            others.setdefault(user, set()).add(pattern.resource_name)
    assert set(documented) == set(granted)
    for user, ops in granted.items():
        row = documented[user]
        reads, writes = ops.get(ACLOperation.READ, set()), ops.get(ACLOperation.WRITE, set())
        assert reads == _topics(row["reads"]), user
        assert writes == _topics(row["writes"]), user
        assert ops.get(ACLOperation.DESCRIBE, set()) == _topics(row["sees only"]), user
        assert ops.get(ACLOperation.CREATE, set()) <= reads | writes, f"{user} may create a topic it does not use"
        for name in others.get(user, set()):
            assert f"`{name}" in row["also"], (user, name)
    # the control topics: no principal but admin adds a webhook; only the notifier reads the webhooks
    assert not any("tonewatch.subscriptions" in ops.get(ACLOperation.WRITE, set()) for ops in granted.values())
    assert {u for u, ops in granted.items() if "tonewatch.subscriptions" in ops.get(ACLOperation.READ, set())} == {
        "notifier"}


def test_the_documented_principals_name_their_compose_services() -> None:
    documented = _documented_principals()
    for service, user in LOGINS.items():
        if user != "admin":  # popped with its row: kafka-setup, the broker and operators
            assert f"`{service}`" in documented[user]["compose service"], (user, service)


def test_every_variable_compose_requires_is_listed_under_secrets() -> None:
    """An operator reads docs/security.md#secrets, not the compose file, to know what to set."""
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", (REPO / "docker-compose.yml").read_text()))
    listed = (REPO / "docs" / "security.md").read_text().split("## Secrets", 1)[1].split("\n## ", 1)[0]
    assert required and not {v for v in required if f"`{v}`" not in listed}
