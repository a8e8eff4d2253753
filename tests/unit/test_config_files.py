"""Configuration as code: every config file the repo ships is parsed and cross-checked here."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _yaml(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def test_compose_has_the_production_topology() -> None:
    compose = _yaml("docker-compose.yml")
    services = compose["services"]
    assert {"kafka", "triton", "worker", "retrain", "prometheus", "alertmanager", "grafana"} <= set(services)
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


def test_grafana_provisioning_uses_fixed_datasource_uid() -> None:
    ds = _yaml("dashboards/provisioning/datasources/prometheus.yml")["datasources"]
    assert [d["uid"] for d in ds] == ["tonewatch-prometheus"]
    providers = _yaml("dashboards/provisioning/dashboards/tonewatch.yml")["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"


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
        "from tonewatch.settings import Settings\n"
        "import streams.app, tonewatch.cli\n"
        "app = streams.app.create_app(Settings(kafka_bootstrap='127.0.0.1:1'))\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
