"""The SQL of Grafana's PostgreSQL panels, and Grafana's macros expanded as Grafana would, so tests can run every
panel, variable and annotation query against the real store."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

POSTGRES_UID = "tonewatch-postgres"
SQL_DASHBOARDS = ("ticker", "incidents")  # dashboards/json stems on the history store; the others on Prometheus
_INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def sql_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Every ``(where, SQL)`` of a dashboard on the store: panel targets, variables and annotations."""
    out = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") == POSTGRES_UID:
                out.append((f"panel {panel['title']!r} {target['refId']}", target["rawSql"]))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("datasource", {}).get("uid") == POSTGRES_UID:
            out.append((f"variable {var['name']!r}", var["query"]))
    for ann in dashboard.get("annotations", {}).get("list", []):
        if ann.get("datasource", {}).get("uid") == POSTGRES_UID:
            out.append((f"annotation {ann['name']!r}", ann["target"]["rawSql"]))
    return out


def expand(sql: str, start: datetime, end: datetime, variables: dict[str, str]) -> str:
    """Grafana's PostgreSQL macros and template variables for the range ``start``..``end`` (aware datetimes)."""
    frm, to = f"'{start.isoformat()}'", f"'{end.isoformat()}'"

    def group(match: re.Match[str]) -> str:
        column, interval = match.group(1).strip(), match.group(2)
        seconds = int(interval[:-1]) * _INTERVALS[interval[-1]]
        return f'floor(extract(epoch from {column})/{seconds})*{seconds} AS "time"'

    # $__interval: what Grafana picks for the range and the panel's width (``variables``), else its 1m floor
    sql = sql.replace("$__interval", f"'{variables.get('__interval', '1m')}'")
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*'(\d+[smhd])'\)", group, sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {frm} AND {to}", sql)
    sql = sql.replace("$__timeFrom()", frm).replace("$__timeTo()", to)
    for name in sorted(variables, key=len, reverse=True):
        sql = sql.replace(f"${name}", variables[name])
    return sql
