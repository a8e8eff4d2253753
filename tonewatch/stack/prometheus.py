"""A real Prometheus (the Debian binary) as a child process, on the production config pointed at local targets.

The config is derived from ``deploy/prometheus/prometheus.yml`` rather than written anew, so the local stack
and the tests exercise the same jobs, relabelling and rule files production ships.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tonewatch.stack.procs import StackError, free_port, spawn, stop, wait_ready

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PRODUCTION_CONFIG = DEPLOY / "prometheus.yml"


@dataclass(frozen=True)
class PrometheusProcess:
    pid: int
    url: str
    config_path: Path
    log_path: Path


def local_config(production: dict[str, Any], targets: dict[str, list[str]], rule_dir: Path,
                 interval_s: float = 1.0, alertmanagers: list[str] | None = None) -> dict[str, Any]:
    """The production config with each kept job's service discovery replaced by local ``host:port`` targets.

    Jobs absent from ``targets`` are dropped (nothing local to scrape); relabelling stays, so series carry
    the production job names. Alerts go to the local ``alertmanagers`` (``host:port``), or nowhere.
    """
    unknown = set(targets) - {job["job_name"] for job in production["scrape_configs"]}
    if unknown:
        raise StackError(f"no production scrape job named {sorted(unknown)} in {PRODUCTION_CONFIG}")
    cfg = copy.deepcopy(production)
    interval = f"{interval_s:g}s"
    cfg["global"] = {**cfg.get("global", {}), "scrape_interval": interval, "evaluation_interval": interval,
                     "scrape_timeout": interval}
    jobs = []
    for job in cfg["scrape_configs"]:
        if job["job_name"] not in targets:
            continue
        kept = {k: v for k, v in job.items() if not k.endswith("_sd_configs") and k != "static_configs"}
        kept["static_configs"] = [{"targets": targets[job["job_name"]]}]
        kept.pop("scrape_interval", None)
        kept.pop("scrape_timeout", None)
        jobs.append(kept)
    cfg["scrape_configs"] = jobs
    cfg["rule_files"] = [str(rule_dir / Path(f).name) for f in production.get("rule_files", [])]
    cfg.pop("alerting", None)
    if alertmanagers:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    return cfg


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/-/ready", timeout=3) as resp:
        return bool(resp.status == 200)


def start_prometheus(data_dir: Path, targets: dict[str, list[str]], interval_s: float = 1.0,
                     binary: str = "prometheus", timeout_s: float = 60.0,
                     alertmanagers: list[str] | None = None, scrape_self: bool = False) -> PrometheusProcess:
    """Write the local config next to a copy of the production rules, start Prometheus on a free port.

    ``scrape_self`` adds the production ``prometheus`` job on that port (its port is known only here).
    """
    exe = shutil.which(binary)
    if exe is None:
        raise StackError(f"'{binary}' is not on PATH: install Debian's 'prometheus' (make system)")
    data_dir = data_dir.resolve()
    rule_dir = data_dir / "rules"
    rule_dir.mkdir(parents=True, exist_ok=True)
    for rules in (DEPLOY / "rules").glob("*.yml"):
        shutil.copy(rules, rule_dir / rules.name)
    production = yaml.safe_load(PRODUCTION_CONFIG.read_text())
    config_path = data_dir / "prometheus.yml"
    port = free_port()
    if scrape_self:
        targets = {**targets, "prometheus": [f"127.0.0.1:{port}"]}
    config = local_config(production, targets, rule_dir, interval_s, alertmanagers)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "prometheus.log"
    pid = spawn([exe, f"--config.file={config_path}", f"--storage.tsdb.path={data_dir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], log_path)
    wait_ready("prometheus", pid, log_path, lambda: _ready(url), timeout_s)
    return PrometheusProcess(pid, url, config_path, log_path)


def stop_prometheus(proc: PrometheusProcess) -> None:
    stop(proc.pid, timeout_s=20)


def api(url: str, path: str, **params: str) -> Any:
    """One Prometheus HTTP API call; a PromQL error raises with Prometheus's own message."""
    query = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=30) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as err:  # 400/422 carry the parse or execution error as JSON
        body = json.loads(err.read() or b"{}")
    if body.get("status") != "success":
        raise StackError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")


def vector_selectors(expr: str) -> list[str]:
    """The metric selectors in a PromQL expression, e.g. to check each one has data when the whole is empty.

    Prometheus 2.42 (Debian bookworm) has no /api/v1/parse_query, so this is a lexical pass good for the
    expressions we write: label matchers are kept whole, strings, ranges and grouping clauses dropped,
    and a name followed by ``(`` is a function, not a metric.
    """
    text = re.sub(r"\[[^\]]*\]", "", _GROUPING.sub("", expr))
    out = []
    pos = 0
    for match in _NAME.finditer(text):
        if match.start() < pos:
            continue
        name, matchers = match.group(1), match.group(2) or ""
        pos = match.end()
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or name in {"and", "or", "unless", "bool", "offset"}:
            continue
        if "_" in name or ":" in name or name in {"up", "ALERTS"}:
            out.append(name + matchers)
    return out


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Every ``(where, PromQL)`` of a Grafana dashboard: panel targets (rows included) and annotations; SQL
    targets (the history store's dashboards) are not PromQL and are left out."""
    out = []
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            if "expr" in target:
                out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "expr" in ann:
            out.append((f"annotation {ann['name']!r}", ann["expr"]))
    return out
