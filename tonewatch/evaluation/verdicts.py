"""The detector's precision on analysts' verdicts (the console's true/false alarm per incident): ``tonewatch eval
verdicts``. The latest verdict per incident counts; an incident nobody judged does not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

VERDICTS_SQL = """
SELECT v.verdict, coalesce(i.severity, 'unknown') AS severity, count(*) AS n
FROM verdicts v
LEFT JOIN LATERAL (SELECT severity FROM incidents WHERE incident_id = v.incident_id ORDER BY version DESC LIMIT 1) i
  ON true
GROUP BY 1, 2
"""


def precision(counts: Iterable[tuple[str, str, int]]) -> dict[str, Any]:
    """``(verdict, severity, n)`` rows -> judged, true and false alarms and precision, overall and per severity
    (precision None where nothing was judged)."""
    table: dict[str, dict[str, int]] = {}
    for verdict, severity, n in counts:
        for key in ("all", severity):
            row = table.setdefault(key, {"true_alarm": 0, "false_alarm": 0})
            row[verdict] = row.get(verdict, 0) + int(n)
    table.setdefault("all", {"true_alarm": 0, "false_alarm": 0})
    out: dict[str, Any] = {}
    for key, row in table.items():
        judged = row["true_alarm"] + row["false_alarm"]
        out[key] = {**row, "judged": judged, "precision": round(row["true_alarm"] / judged, 4) if judged else None}
    return out


def read_precision(conn: Any) -> dict[str, Any]:
    return precision(conn.execute(VERDICTS_SQL).fetchall())


def lines(table: dict[str, Any]) -> list[str]:
    out = ["severity   judged  true  false  precision"]
    for key in ["all", *sorted(k for k in table if k != "all")]:
        r = table[key]
        shown = "-" if r["precision"] is None else f"{r['precision']:.3f}"
        out.append(f"{key:<10} {r['judged']:>6} {r['true_alarm']:>5} {r['false_alarm']:>6}  {shown:>9}")
    return out
