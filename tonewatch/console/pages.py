"""The pages: the inbox, one incident, one ticker. Every page needs a signed-in session of any role."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse

from tonewatch.console.chart import trend_chart
from tonewatch.console.ports import ConsoleReader, InboxFilter, Row
from tonewatch.console.web import console, reader_session, render
from tonewatch.notify.incidents import epoch

router = APIRouter()
SEVERITIES = ("info", "warning", "critical")
DIMENSIONS = ("ticker", "sector", "topic", "source")
STATUSES = ("open", "opened", "updated", "resolved", "all")
INBOX_LIMIT = 200
MESSAGES_SHOWN = 100
TICKER = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,14}")
# an incident's chart: this many windows before its first firing window and after its last
BEFORE_WINDOWS, AFTER_WINDOWS = 40, 10


def _choice(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    """A filter's value; empty is "any" (the filter form sends it), anything unknown a 400."""
    if not value:
        return None
    if value not in allowed:
        raise HTTPException(400, f"{name} must be one of {', '.join(allowed)}")
    return value


@router.get("/")
def inbox(request: Request, severity: str | None = None, dimension: str | None = None, key: str | None = None,
          status: str | None = "open") -> Response:
    session = reader_session(request)
    where = InboxFilter(_choice(severity, SEVERITIES, "severity"), _choice(dimension, DIMENSIONS, "dimension"),
                        (key or "").strip()[:200] or None, _choice(status, STATUSES, "status"))
    rows = console(request).reader.incidents(where, INBOX_LIMIT)
    return render(request, "inbox.html", {"session": session, "incidents": rows, "where": where,
                                          "severities": SEVERITIES, "dimensions": DIMENSIONS, "statuses": STATUSES,
                                          "next": str(request.url.path) + (f"?{request.url.query}" if
                                                                           request.url.query else "")})


def _window(child: dict[str, Any]) -> tuple[datetime, datetime] | None:
    window = child.get("window")
    if not isinstance(window, dict):
        return None
    start, end = epoch(window.get("start")), epoch(window.get("end"))
    if start is None or end is None:
        return None
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(max(end, start), UTC)


def _children(reader: ConsoleReader, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Each child alert with its key's chart: share and baseline around its firing window, that window marked."""
    out = []
    for child in payload.get("children") or []:
        if not isinstance(child, dict):
            continue
        window = _window(child)
        chart = None
        if window is not None:
            length = max(window[1] - window[0], timedelta(seconds=1))
            rows = reader.key_windows(str(child.get("dimension")), str(child.get("key")),
                                      window[0] - BEFORE_WINDOWS * length, window[1] + AFTER_WINDOWS * length)
            chart = trend_chart(rows, [window])
        out.append({**child, "chart": chart})
    return out


def _driving_messages(reader: ConsoleReader, payload: dict[str, Any]) -> tuple[list[Row], list[dict[str, Any]]]:
    """The stored messages that drove the children (with their model versions), and the incident's top messages
    the store no longer holds (retention), shown as the payload carries them."""
    children = [c for c in payload.get("children") or [] if isinstance(c, dict)]
    ids = sorted({str(i) for c in children for i in c.get("message_ids") or []})
    top = [m for m in payload.get("top_messages") or [] if isinstance(m, dict)]
    ids = sorted({*ids, *(str(m.get("message_id")) for m in top)})
    windows = [w for w in map(_window, children) if w is not None]
    if not ids or not windows:
        return [], top
    slack = max(w[1] - w[0] for w in windows)  # a late message still counts in its event time's window
    start, end = min(w[0] for w in windows) - slack, max(w[1] for w in windows) + slack
    found = reader.messages(ids, start, end)[:MESSAGES_SHOWN]
    shown = {str(m["id"]) for m in found}
    return found, [m for m in top if str(m.get("message_id")) not in shown]


@router.get("/incidents/{incident_id}")
def incident(request: Request, incident_id: str) -> Response:
    session = reader_session(request)
    reader = console(request).reader
    row = reader.incident(incident_id)
    if row is None:
        raise HTTPException(404, f"No incident {incident_id!r} in the store.")
    payload = row["payload"] if isinstance(row.get("payload"), dict) else {}
    messages, unstored = _driving_messages(reader, payload)
    return render(request, "incident.html", {
        "session": session, "row": row, "payload": payload, "children": _children(reader, payload),
        "messages": messages, "unstored": unstored, "next": request.url.path,
    })


@router.get("/tickers")
def ticker_search(request: Request, q: str | None = None) -> Response:
    session = reader_session(request)
    if q and q.strip():
        return RedirectResponse(f"/tickers/{quote(q.strip().upper(), safe='')}", status_code=303)
    return render(request, "ticker.html", {"session": session, "ticker": None})


@router.get("/tickers/{ticker}")
def ticker(request: Request, ticker: str, hours: Annotated[int, Query(ge=1, le=24 * 30)] = 24) -> Response:
    """The ticker's last ``hours`` of windows, counted back from its newest window rather than from now: a
    replayed or quiet ticker still shows its latest history."""
    session = reader_session(request)
    symbol = ticker.strip().upper()
    if not TICKER.fullmatch(symbol):
        raise HTTPException(400, "A ticker is 1-15 letters, digits, '.' or '-'.")
    reader = console(request).reader
    latest = reader.latest_window("ticker", symbol)
    context: dict[str, Any] = {"session": session, "ticker": symbol, "hours": hours, "latest": latest,
                               "next": request.url.path + (f"?{request.url.query}" if request.url.query else "")}
    if latest is not None:
        since = latest - timedelta(hours=hours)
        alerts = [a for a in reader.alerts(symbol, since) if a.get("dimension") == "ticker"]
        firing = [(a["window_start"], a["window_end"]) for a in alerts if a.get("status") == "firing"]
        context |= {"chart": trend_chart(reader.trend(symbol, since), firing), "alerts": alerts[::-1],
                    "messages": reader.ticker_messages(symbol, since, 50)}
    return render(request, "ticker.html", context)
