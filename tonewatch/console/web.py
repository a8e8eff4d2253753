"""What every route shares: the console's collaborators, the session of a request, the CSRF and role checks,
the session cookie and template rendering."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.templating import Jinja2Templates

from models.labels import TOPIC
from tonewatch.console.auth import COOKIE, Authenticator, LoginLimiter, Session, Sessions
from tonewatch.console.models_port import ModelsPort
from tonewatch.console.ports import ConsoleLedger, ConsoleReader, ConsoleWriter
from tonewatch.core.service_sections import ConsoleSettings

HERE = Path(__file__).parent


class SignInRequired(Exception):
    """A page was asked for without a session: the browser is sent to the sign-in form, then back."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


@dataclass(frozen=True)
class Console:
    """The collaborators of one console app (``request.app.state.console``)."""

    settings: ConsoleSettings
    auth: Authenticator
    sessions: Sessions
    limiter: LoginLimiter
    reader: ConsoleReader
    ledger: ConsoleLedger
    writer: ConsoleWriter
    templates: Jinja2Templates
    models: ModelsPort | None = None  # the Models page's; None: no model registry, the page is a 404


def console(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def session_of(request: Request) -> Session | None:
    """The request's valid session, signed in or not. A user since removed from the users file, or given another
    role, no longer has one."""
    c = console(request)
    session = c.sessions.load(request.cookies.get(COOKIE))
    if session is not None and session.user is not None:
        user = c.auth.users.get(session.user)
        if user is None or user.role != session.role:
            return None
    return session


def reader_session(request: Request) -> Session:
    """A signed-in session, for a page; without one the browser is sent to sign in."""
    session = session_of(request)
    if session is None or session.user is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise SignInRequired(request.url.path + query)
    return session


def csrf_ok(session: Session | None, token: str) -> bool:
    """The form's token is the session's (compared in constant time, as bytes: any text may be posted)."""
    return session is not None and bool(token) and hmac.compare_digest(token.encode(), session.csrf.encode())


def writer_session(request: Request, csrf: str) -> Session:
    """A signed-in session allowed to change things, whose CSRF token the form carries; else 403."""
    session = session_of(request)
    if session is None or session.user is None or not csrf_ok(session, csrf):
        raise HTTPException(403, "This form has expired or did not come from this console: reload the page.")
    if not session.can_write:
        raise HTTPException(403, f"The {session.role} role can only read.")
    return session


def set_session(response: Response, request: Request, session: Session) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's form sends it), Secure over HTTPS."""
    response.set_cookie(COOKIE, console(request).sessions.dump(session),
                        max_age=console(request).sessions.max_age(session), path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def safe_next(value: str | None) -> str:
    """A path on this console to go back to; anything else (another host, ``//host``, ``/\\host``) is the inbox."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or any(c < " " for c in value):
        return "/"
    return value


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    context = {"session": session_of(request), **context}
    return console(request).templates.TemplateResponse(request, name, context, status_code=status_code)


def when(value: Any) -> str:
    """A time as UTC to the second; an ISO string (from a payload) is parsed first."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"


def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=HERE / "templates")
    found.env.filters["when"] = when
    found.env.filters["pct"] = pct
    found.env.globals["topics"] = TOPIC  # the relabel form's choices
    return found
