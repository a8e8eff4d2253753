"""Configuration as code: every config file the repo ships is parsed and cross-checked here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard_sql import SQL_DASHBOARDS, sql_queries
from tonewatch.notify.senders import ALERTNAME
from tonewatch.stack.prometheus import dashboard_queries, local_config, vector_selectors

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "dashboards" / "json").glob("*.json"))
PG = {"type": "grafana-postgresql-datasource", "uid": "tonewatch-postgres"}
GRAFANA_BUILTIN = "-- Grafana --"  # Grafana's own annotation store (the delivery area posts alert text there)
DATASOURCES = REPO / "dashboards" / "provisioning" / "datasources"


def _yaml(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def _run(*cmd: str) -> str:
    """A real Prometheus tool; its output is the assertion message when it fails."""
    assert shutil.which(cmd[0]), f"{cmd[0]} is not installed (make system)"
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _datasource_uids(node: Any) -> set[str]:
    """Every datasource uid referenced anywhere in a dashboard (panels, targets, variables, annotations)."""
    if isinstance(node, dict):
        found = {node["datasource"]["uid"]} if isinstance(node.get("datasource"), dict) else set()
        if isinstance(node.get("datasource"), str):
            found.add(node["datasource"])  # legacy name reference: never provisioned by uid
        return found.union(*(_datasource_uids(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_datasource_uids(v) for v in node))
    return set()


def _provisioned() -> dict[str, dict[str, Any]]:
    """Every provisioned Grafana datasource, by uid."""
    sources = [d for path in sorted(DATASOURCES.glob("*.yml")) for d in yaml.safe_load(path.read_text())["datasources"]]
    by_uid = {d["uid"]: d for d in sources}
    assert len(by_uid) == len(sources), "two datasources share a uid"
    return by_uid


def test_compose_has_the_production_topology() -> None:
    compose = _yaml("docker-compose.yml")
    services = compose["services"]
    expected = {"kafka", "triton", "worker", "notifier", "sink", "postgres", "retrain", "prometheus", "alertmanager",
                "grafana", "console"}
    assert expected <= set(services)
    gpu = services["triton"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file(), name
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (REPO / host).exists(), f"{name}: {host}"


def test_compose_holds_no_secrets() -> None:
    text = (REPO / "docker-compose.yml").read_text().lower()
    for line in text.splitlines():
        if "password" in line and ":" in line:
            assert "${" in line, line
    # the webhook signing key comes from the environment only: no ':-default' a deployment could run on
    secret = _yaml("docker-compose.yml")["services"]["notifier"]["environment"]["TONEWATCH_DELIVERY__WEBHOOK_SECRET"]
    assert secret == "${TONEWATCH_DELIVERY__WEBHOOK_SECRET}"


def test_compose_services_are_healthchecked_and_workers_scalable() -> None:
    services = _yaml("docker-compose.yml")["services"]
    for name in ("kafka", "triton", "worker", "notifier", "sink", "postgres", "prometheus", "alertmanager", "grafana",
                 "console"):
        assert services[name]["healthcheck"]["test"], name
    # replicas cannot share a host port: the worker exposes its metrics port to the compose network only
    assert "ports" not in services["worker"] and services["worker"]["expose"] == ["9108"]
    assert services["worker"]["environment"]["TONEWATCH_METRICS_HOST"] == "0.0.0.0"
    notifier = services["notifier"]
    assert notifier["environment"]["TONEWATCH_DELIVERY__METRICS_PORT"] == "9109"
    assert "TONEWATCH_SCORING__METRICS_PORT" not in notifier["environment"]  # the worker's setting, not the notifier's
    assert notifier["environment"]["TONEWATCH_METRICS_HOST"] == "0.0.0.0" and notifier["expose"] == ["9109"]
    assert "127.0.0.1:9109/metrics" in " ".join(notifier["healthcheck"]["test"])
    assert "alert_webhook_url" in services["alertmanager"]["secrets"]


def test_compose_runs_the_history_store_and_its_sink() -> None:
    from tonewatch.core.settings import Settings

    services = _yaml("docker-compose.yml")["services"]
    postgres, sink = services["postgres"], services["sink"]
    assert postgres["image"] == "postgres:15"
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "postgres-data" in _yaml("docker-compose.yml")["volumes"]
    assert _mount(postgres, "/var/lib/postgresql/data") == "postgres-data"  # history survives a re-create
    assert sink["command"] == ["tonewatch", "sink"]
    assert sink["build"] == services["notifier"]["build"]
    env = sink["environment"]
    assert env["TONEWATCH_STORE__METRICS_PORT"] == "9110" == str(Settings().store.metrics_port)
    assert env["TONEWATCH_METRICS_HOST"] == "0.0.0.0" and sink["expose"] == ["9110"] and "ports" not in sink
    assert "127.0.0.1:9110/metrics" in " ".join(sink["healthcheck"]["test"])
    assert sink["depends_on"] == {"kafka-setup": {"condition": "service_completed_successfully"},
                                  "postgres": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def _mount(service: dict, target: str) -> str:
    hosts = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == target]
    assert len(hosts) == 1, (target, service["volumes"])
    return hosts[0]


def test_compose_retrains_both_models_daily_under_the_retrain_profile() -> None:
    services = _yaml("docker-compose.yml")["services"]
    jobs = {name: svc for name, svc in services.items() if "retrain" in svc.get("profiles", [])}
    commands = sorted(tuple(svc["command"]) for svc in jobs.values())
    assert commands == [("tonewatch", "retrain", m, "--every", "24h", "--push") for m in ("sentiment", "topic")]
    for name, svc in jobs.items():
        assert svc["build"]["args"]["EXTRAS"] == "[models]", name  # training needs torch
        assert _mount(svc, "/models") == "./triton_repo", name  # --push writes the next version there
        assert svc["environment"]["TONEWATCH_TRITON__MODEL_REPOSITORY"] == "/models", name


def test_compose_syncs_models_after_triton_and_before_the_workers() -> None:
    """A restarted Triton loads the newest version on disk; the model events decide instead."""
    services = _yaml("docker-compose.yml")["services"]
    sync = services["models-sync"]
    script = " ".join(sync["command"])
    assert "tonewatch models sync $$m" in script and "for m in sentiment topic" in script
    assert sync["depends_on"]["triton"] == {"condition": "service_healthy", "restart": True}
    assert sync["environment"]["TONEWATCH_TRITON__HTTP_URL"] == "triton:8000"
    assert _mount(sync, "/models") == "./triton_repo"  # config.pbtxt for the load override
    assert "profiles" not in sync and sync["restart"] == "on-failure"
    assert services["worker"]["depends_on"]["models-sync"] == {"condition": "service_completed_successfully"}
    assert _mount(services["worker"], "/models") == "./triton_repo"  # each version's drift reference
    assert "tonewatch models sync $$m || exit 1" in script  # a fresh deployment (no events) syncs too


def test_triton_image_writes_no_bytecode_into_the_model_repository() -> None:
    text = (REPO / "docker" / "triton.Dockerfile").read_text()
    env = [line for line in text.splitlines() if line.startswith("ENV ")]
    assert any("PYTHONDONTWRITEBYTECODE=1" in line.split() for line in env), env


def test_grafana_provisioning_uses_fixed_datasource_uid() -> None:
    ds = _yaml("dashboards/provisioning/datasources/prometheus.yml")["datasources"]
    assert [d["uid"] for d in ds] == ["tonewatch-prometheus"]
    assert ds[0]["url"] == "http://prometheus:9090"
    provisioned = _provisioned()
    assert set(provisioned) == {"tonewatch-prometheus", "tonewatch-postgres"}
    assert [uid for uid, d in provisioned.items() if d.get("isDefault")] == ["tonewatch-prometheus"]
    pg = provisioned["tonewatch-postgres"]
    assert (pg["type"], pg["url"], pg["user"]) == ("grafana-postgresql-datasource", "postgres:5432", "grafana_reader")
    postgres = _yaml("docker-compose.yml")["services"]["postgres"]
    assert pg["jsonData"]["database"] == postgres["environment"]["POSTGRES_DB"]
    assert pg["jsonData"]["sslmode"] == "disable"  # the compose network only: PostgreSQL has no host port
    providers = _yaml("dashboards/provisioning/dashboards/tonewatch.yml")["providers"]
    grafana = _yaml("docker-compose.yml")["services"]["grafana"]
    assert _mount(grafana, "/etc/grafana/provisioning") == "./dashboards/provisioning"
    # the provider reads exactly the tested dashboards in dashboards/json, nothing else
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    assert _mount(grafana, "/var/lib/grafana/dashboards") == "./dashboards/json"


def test_dashboards_parse_and_reference_only_provisioned_datasources() -> None:
    provisioned = set(_provisioned())
    names = {p.stem for p in DASHBOARDS}
    assert names == {"risk-overview", "alerts", "model-ops", "pipeline-health", "ticker", "incidents"}
    uids = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids.append(dashboard["uid"])
        assert _datasource_uids(dashboard) <= provisioned | {GRAFANA_BUILTIN}, path.name
        # a dashboard reads one store: PromQL from Prometheus, or SQL from the history store
        source = PG if path.stem in SQL_DASHBOARDS else {"type": "prometheus", "uid": "tonewatch-prometheus"}
        for panel in dashboard["panels"]:
            if panel["type"] != "text":
                assert panel["datasource"] == source, panel["title"]
                assert panel["targets"], panel["title"]
            for target in panel.get("targets", []):
                assert target["datasource"] == source, panel["title"]
        queries = sql_queries(dashboard) if path.stem in SQL_DASHBOARDS else dashboard_queries(dashboard)
        assert queries and all(expr.strip() for _, expr in queries), path.name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
    assert len(uids) == len(set(uids))


def test_risk_overview_marks_alerts_from_prometheus() -> None:
    dashboard = json.loads((REPO / "dashboards" / "json" / "risk-overview.json").read_text())
    exprs = [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    assert any("tonewatch_alerts_total" in e and 'status="firing"' in e for e in exprs)


def test_model_ops_shows_rollout_and_drift_and_nothing_is_left_pending() -> None:
    """Rollout roles, canary share and drift PSI are provisioned panels now; no pending file waits."""
    assert not (REPO / "dashboards" / "pending").exists() and not (REPO / "deploy" / "prometheus" / "pending").exists()
    dashboard = json.loads((REPO / "dashboards" / "json" / "model-ops.json").read_text())
    names = {s.split("{")[0] for _, expr in dashboard_queries(dashboard) for s in vector_selectors(expr)}
    assert {"tonewatch_model_version_info", "tonewatch_canary_share", "tonewatch_drift_psi"} <= names
    assert not [p for p in dashboard["panels"] if p["type"] == "text"]  # the "waiting for metrics" note went
    rules = [r for g in _yaml("deploy/prometheus/rules/alerting.yml")["groups"] for r in g["rules"]]
    drift = next(r for r in rules if r.get("alert") == "TonewatchDriftHigh")
    assert "tonewatch_drift_psi" in drift["expr"] and "> 0.2" in drift["expr"]
    tests = (REPO / "deploy" / "prometheus" / "tests" / "alerting_test.yml").read_text()
    assert "alertname: TonewatchDriftHigh" in tests


def test_promtool_checks_config_and_rules() -> None:
    _run("promtool", "check", "config", "deploy/prometheus/prometheus.yml")
    rule_files = sorted(str(p.relative_to(REPO)) for p in (REPO / "deploy" / "prometheus").glob("*/*.yml")
                        if p.parent.name == "rules")
    assert len(rule_files) == 2
    _run("promtool", "check", "rules", *rule_files)
    prom = _yaml("deploy/prometheus/prometheus.yml")
    assert prom["rule_files"] == ["rules/recording.yml", "rules/alerting.yml"]


def test_promtool_rule_unit_tests_fire_the_alerts() -> None:
    """Synthetic series through the real rule engine: stalled, Triton down, lag growing, dead letters."""
    _run("promtool", "test", "rules", "deploy/prometheus/tests/alerting_test.yml")


def test_prometheus_scrapes_the_compose_services() -> None:
    prom = _yaml("deploy/prometheus/prometheus.yml")
    services = _yaml("docker-compose.yml")["services"]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert {"worker", "triton", "notifier", "sink", "alertmanager"} <= set(jobs)
    worker_sd = jobs["worker"]["dns_sd_configs"][0]  # every replica, not one DNS answer
    assert worker_sd["names"] == ["worker"] and worker_sd["port"] == 9108
    assert jobs["sink"]["static_configs"] == [{"targets": ["sink:9110"]}]
    for job in ("triton", "notifier", "sink", "alertmanager"):
        for target in jobs[job]["static_configs"][0]["targets"]:
            assert target.split(":")[0] in services, target
    prometheus = services["prometheus"]
    assert _mount(prometheus, "/etc/prometheus") == "./deploy/prometheus"
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_local_config_keeps_production_jobs_and_passes_promtool(tmp_path: Path) -> None:
    prod = _yaml("deploy/prometheus/prometheus.yml")
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "deploy" / "prometheus" / "rules", rules)
    cfg = local_config(prod, {"worker": ["127.0.0.1:1234"], "triton": ["127.0.0.1:8002"]}, rules, interval_s=1)
    assert [j["job_name"] for j in cfg["scrape_configs"]] == ["worker", "triton"]
    assert cfg["scrape_configs"][0] == {"job_name": "worker", "static_configs": [{"targets": ["127.0.0.1:1234"]}]}
    assert cfg["global"]["scrape_interval"] == "1s" and "alerting" not in cfg
    assert cfg["rule_files"] == [str(rules / "recording.yml"), str(rules / "alerting.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    _run("promtool", "check", "config", str(path))
    with pytest.raises(RuntimeError, match="no production scrape job"):
        local_config(prod, {"wrokers": ["x:1"]}, rules)


def test_local_config_sends_alerts_to_the_local_alertmanager(tmp_path: Path) -> None:
    prod = _yaml("deploy/prometheus/prometheus.yml")
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "deploy" / "prometheus" / "rules", rules)
    targets = {"worker": ["127.0.0.1:1"], "notifier": ["127.0.0.1:2"], "alertmanager": ["127.0.0.1:3"]}
    cfg = local_config(prod, targets, rules, alertmanagers=["127.0.0.1:3"])
    assert [j["job_name"] for j in cfg["scrape_configs"]] == ["worker", "notifier", "alertmanager"]
    assert cfg["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:3"]}]}]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    _run("promtool", "check", "config", str(path))


def test_alerts_dashboard_shows_every_delivery_outcome() -> None:
    """The notifier's outcome label values, spelled as the notifier spells them."""
    from tonewatch.notify.metrics import OUTCOMES

    dashboard = json.loads((REPO / "dashboards" / "json" / "alerts.json").read_text())
    exprs = [expr for _, expr in dashboard_queries(dashboard)]
    delivery = [e for e in exprs if "tonewatch_deliver" in e]
    assert len(delivery) >= 5
    named = {v for e in delivery for v in re.findall(r'outcome="(\w+)"', e)}
    assert named == {"delivered", "retry", "dead_letter"} and named <= set(OUTCOMES)
    assert any("by (kind, outcome)" in e for e in delivery)  # duplicates show there
    assert any("tonewatch_delivery_seconds_bucket" in e for e in delivery)
    assert any("tonewatch_escalations_total" in e for e in exprs)


@pytest.mark.parametrize(("expr", "selectors"), [
    ('sum by (topic) (rate(tonewatch_messages_in_total{job="worker"}[1m]))',
     ['tonewatch_messages_in_total{job="worker"}']),
    ("sum(rate(a_b[5m])) / 1e6 / sum without (le) (c:d:e)", ["a_b", "c:d:e"]),
    ('up{job="triton"} == 0 or absent(up{job="triton"})', ['up{job="triton"}', 'up{job="triton"}']),
    ('histogram_quantile(0.99, sum by (le) (rate(x_bucket{k=~"a|b"}[$__rate_interval])))', ['x_bucket{k=~"a|b"}']),
    ("count(ALERTS) or vector(0)", ["ALERTS"]),
])
def test_vector_selectors(expr: str, selectors: list[str]) -> None:
    assert vector_selectors(expr) == selectors


def test_alertmanager_routes_by_severity_to_a_webhook_kept_out_of_git(tmp_path: Path) -> None:
    am = _yaml("deploy/alertmanager/alertmanager.yml")
    receivers = {r["name"]: r for r in am["receivers"]}
    routes = am["route"]["routes"]
    incidents, platform = routes[0], routes[1:]  # the first match wins: Tonewatch's incidents first
    assert incidents["matchers"] == [f'alertname="{ALERTNAME}"'] and incidents["group_by"] == ["incident"]
    for rs in (platform, incidents["routes"]):
        assert {r["receiver"] for r in rs} <= set(receivers)
        assert {m for r in rs for m in r["matchers"]} == {'severity="critical"', 'severity="warning"'}
    for receiver in receivers.values():
        for hook in receiver["webhook_configs"]:
            assert "url" not in hook and hook["url_file"].startswith("/run/secrets/"), receiver["name"]
    # Debian's amtool (0.25) predates url_file (Alertmanager 0.26; compose runs 0.28): check all else with a url
    text = (REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    checked = tmp_path / "alertmanager.yml"
    checked.write_text(re.sub(r"url_file: \S+", "url: http://127.0.0.1:9/hook", text))
    assert "SUCCESS" in _run("amtool", "check-config", str(checked))


def test_prometheus_and_alertmanager_configs_parse() -> None:
    prom = _yaml("deploy/prometheus/prometheus.yml")
    assert prom["scrape_configs"] and prom["alerting"]["alertmanagers"]
    am = _yaml("deploy/alertmanager/alertmanager.yml")
    assert am["route"]["receiver"] in {r["name"] for r in am["receivers"]}


def test_worker_imports_no_torch_and_does_no_work_at_import() -> None:
    """The worker image has no torch; building the app must not need it (nor touch the network)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tonewatch.core.settings import Settings\n"
        "import streams.app, tonewatch.cli\n"
        "app = streams.app.create_app(Settings().updated(kafka__bootstrap='127.0.0.1:1'))\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
