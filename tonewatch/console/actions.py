"""Sign-in, sign-out and the actions: ack, verdict, relabel. Every POST checks the session's CSRF token; every
action writes an audit row. Ack and relabel build their records with the CLI's own functions
(``tonewatch alerts ack``: ``ack_record``; ``tonewatch feedback add``: ``feedback_for_message``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse

from models.feedback import FeedbackError, ScoredMessage, feedback_for_message
from tonewatch.console.auth import COOKIE, Session
from tonewatch.console.ports import AuditEntry, Verdict
from tonewatch.console.web import console, csrf_ok, render, safe_next, session_of, set_session, writer_session
from tonewatch.notify.store import ack_record

router = APIRouter()
Text = Annotated[str, Form()]  # every field optional: a form without its CSRF token is a 403, never a 422
Back = Annotated[str, Form(alias="next")]
VERDICTS = ("true_alarm", "false_alarm")
MODELS = ("sentiment", "topic")
NOTE_CHARS = 2000


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_form(request: Request, session: Session, back: str, error: str | None = None,
                status_code: int = 200) -> Response:
    response = render(request, "login.html", {"session": session, "next": back, "error": error},
                      status_code=status_code)
    set_session(response, request, session)
    return response


@router.get("/login")
def login_form(request: Request, back: Annotated[str | None, Query(alias="next")] = None) -> Response:
    session = session_of(request)
    if session is not None and session.user is not None:
        return RedirectResponse(safe_next(back), status_code=303)
    # the form's own anonymous session carries its CSRF token; signing in replaces it
    return _login_form(request, session or console(request).sessions.anonymous(), safe_next(back))


@router.post("/login")
def login(request: Request, username: Text = "", password: Text = "", csrf: Text = "", back: Back = "/") -> Response:
    c = console(request)
    session = session_of(request)
    if session is None or not csrf_ok(session, csrf):
        raise HTTPException(403, "The sign-in form has expired: reload it.")
    client, target, username = _client(request), safe_next(back), username[:64]
    key = (username, client)
    if not c.limiter.attempt(key):  # over the limit: the password is not even checked
        c.ledger.audit(AuditEntry(username, "sign-in refused", client, after={"reason": "too many attempts"}))
        response = _login_form(request, session, target, "Too many failed sign-ins: wait a few minutes.", 429)
        response.headers["Retry-After"] = str(int(c.settings.login_window_s))
        return response
    user = c.auth.check(username, password)
    if user is None:
        c.ledger.audit(AuditEntry(username, "sign-in refused", client, after={"reason": "wrong name or password"}))
        return _login_form(request, session, target, "Wrong user name or password.", 401)
    c.limiter.succeeded(key)
    c.ledger.audit(AuditEntry(user.name, "sign-in", client, after={"role": user.role}))
    response = RedirectResponse(target, status_code=303)
    set_session(response, request, c.sessions.signed_in(user))
    return response


@router.post("/logout")
def logout(request: Request, csrf: Text = "") -> Response:
    session = session_of(request)
    if session is None or session.user is None or not csrf_ok(session, csrf):
        raise HTTPException(403, "This form has expired: reload the page.")
    console(request).ledger.audit(AuditEntry(session.user, "sign-out", _client(request)))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


def _writer(request: Request, csrf: str) -> str:
    """The name of a signed-in user who may write and whose form carries the CSRF token (else a 403)."""
    return str(writer_session(request, csrf).user)


def _note(text: str) -> str | None:
    if len(text) > NOTE_CHARS:
        raise HTTPException(400, f"A note is at most {NOTE_CHARS} characters.")
    return text.strip() or None


def _known_incident(request: Request, incident_id: str) -> dict[str, Any]:
    row = console(request).reader.incident(incident_id)
    if row is None:
        raise HTTPException(404, f"No incident {incident_id!r} in the store.")
    return row


@router.post("/incidents/{incident_id}/ack")
def ack(request: Request, incident_id: str, csrf: Text = "", note: Text = "", back: Back = "/") -> Response:
    """The record ``tonewatch alerts ack ID --by USER --note NOTE`` writes; the notifier stops re-notifying."""
    user = _writer(request, csrf)
    row = _known_incident(request, incident_id)
    c = console(request)
    record = ack_record(incident_id, user, _note(note))
    c.writer.ack(record)
    before = {k: row.get(k) for k in ("version", "status", "severity", "verdict")}  # what the analyst acked
    c.ledger.audit(AuditEntry(user, "ack", incident_id, before, record))
    return RedirectResponse(safe_next(back), status_code=303)


@router.post("/incidents/{incident_id}/verdict")
def verdict(request: Request, incident_id: str, verdict: Text = "", csrf: Text = "", note: Text = "",
            back: Back = "/") -> Response:
    """A true or false alarm, with a note; the latest verdict on an incident wins, the audit keeps all."""
    user = _writer(request, csrf)
    if verdict not in VERDICTS:
        raise HTTPException(400, f"A verdict is one of {', '.join(VERDICTS)}.")
    row = _known_incident(request, incident_id)
    before = {"verdict": row["verdict"], "note": row.get("verdict_note"), "by": row.get("verdict_by")} \
        if row.get("verdict") else None
    new = Verdict(incident_id, "true_alarm" if verdict == "true_alarm" else "false_alarm", user, _note(note))
    after = {"verdict": new.verdict, "note": new.note, "by": new.username}
    console(request).ledger.save_verdict(new, AuditEntry(user, "verdict", incident_id, before, after))
    return RedirectResponse(safe_next(back), status_code=303)


def _when(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, "ts must be an ISO-8601 time.") from None
    if ts.tzinfo is None:
        raise HTTPException(400, "ts must carry its time zone.")
    return ts


@router.post("/relabel")
def relabel(request: Request, message_id: Text = "", ts: Text = "", label: Text = "", model: Text = "sentiment",
            csrf: Text = "", back: Back = "/") -> Response:
    """The record ``tonewatch feedback add --message-id ID --label L --model M --by USER`` writes: its text and
    source come from the scored message, here the store's copy of it (the CLI scans the scored topic)."""
    user = _writer(request, csrf)
    if model not in MODELS:
        raise HTTPException(400, f"model is one of {', '.join(MODELS)}.")
    c = console(request)
    row = c.reader.message(message_id, _when(ts))
    if row is None:
        raise HTTPException(404, f"No message {message_id!r} at {ts} in the store.")

    def lookup(ids: set[str]) -> dict[str, ScoredMessage]:
        return {message_id: ScoredMessage(str(row["text"]), row.get("source"))} if message_id in ids else {}

    try:
        fb = feedback_for_message(lookup, message_id=message_id, model=model, label=label, by=user)
    except FeedbackError as exc:
        raise HTTPException(400, str(exc)) from exc
    c.writer.feedback([fb])
    before = {"model": model, "label": row.get("sentiment" if model == "sentiment" else "topic")}
    c.ledger.audit(AuditEntry(user, "relabel", message_id, before, fb.model_dump(mode="json")))
    return RedirectResponse(safe_next(back), status_code=303)
