"""Grafana links between the provisioned dashboards: each opens a dashboard that exists, with variables it has."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "dashboards" / "json").glob("*.json"))


def _links(node: object) -> list[str]:
    """Every data link and panel link URL anywhere in a dashboard."""
    if isinstance(node, dict):
        found = [node["url"]] if isinstance(node.get("url"), str) and "title" in node else []
        return found + [u for v in node.values() for u in _links(v)]
    if isinstance(node, list):
        return [u for v in node for u in _links(v)]
    return []


def test_dashboard_links_open_a_provisioned_dashboard_with_its_own_variables() -> None:
    boards = {(d := json.loads(p.read_text()))["uid"]: d for p in DASHBOARDS}
    checked = 0
    for uid, dashboard in boards.items():
        for url in _links(dashboard):
            found = re.fullmatch(r"/d/([\w-]+)/[\w-]+\?(.*)", url)
            assert found, f"{uid}: link {url} is not to a dashboard"
            target = boards.get(found.group(1))
            assert target is not None, f"{uid}: link {url} to no provisioned dashboard"
            names = {v["name"] for v in target["templating"]["list"]}
            wanted = set(re.findall(r"var-(\w+)=", found.group(2)))
            assert wanted and wanted <= names, f"{uid}: {url} sets {wanted}, {found.group(1)} has {names}"
            checked += 1
    # a sector on the Risk overview opens the Ticker dashboard on that sector's tickers
    sectors = [u for u in _links(boards["tonewatch-risk-overview"]) if "var-sector=${__field.labels.key" in u]
    assert sectors and all(u.startswith("/d/tonewatch-ticker/") for u in sectors), sectors
    assert checked >= 1
