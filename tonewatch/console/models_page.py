"""The Models page (ops only): serving versions and their roles, shadow agreement, drift PSI, model cards and the
feedback collected since the production version was trained; promote and rollback, each confirmed on a second
form, done by the CLI's own functions (``tonewatch models promote`` / ``rollback``) and audited with the routing
before and after. Analysts and viewers get 403: the issue gives this page to the ops role alone."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from tonewatch.console.auth import Session
from tonewatch.console.models_port import ModelActionRefused, ModelsPort, Row, feedback_since, roles, version_rows
from tonewatch.console.ports import AuditEntry
from tonewatch.console.web import console, reader_session, render, writer_session
from tonewatch.core.errors import TonewatchError

router = APIRouter()
Text = Annotated[str, Form()]  # every field optional: a form without its CSRF token is a 403, never a 422
OPS = "ops"


def _port(request: Request) -> ModelsPort:
    port = console(request).models
    if port is None:
        raise HTTPException(404, "This console was started without the model registry.")
    return port


def _ops(session: Session) -> Session:
    if session.role != OPS:
        raise HTTPException(403, f"The Models page is for the ops role; {session.user} is {session.role}.")
    return session


def _serving(status: Row) -> int | None:
    """The version production serves; before any model event, the newest on disk (what a start loads)."""
    production = status.get("production")
    return production if production is not None else max(status.get("on_disk") or [0]) or None


def _model_view(port: ModelsPort, name: str, kind: str, feedback: list[Any]) -> Row:
    status = port.status(name)
    production, candidate = status.get("production"), status.get("candidate")
    agreement = None
    if status.get("mode") == "shadow" and production is not None and candidate is not None:
        agreement = port.agreement(name, production, candidate)
    versions = version_rows(status, port.drift(name), agreement)
    for row in versions:
        row["card"] = port.card(name, row["version"])
    serving = _serving(status)
    since = port.trained_at(name, serving) if serving is not None else None
    return {"name": name, "kind": kind, "status": status, "versions": versions, "serving": serving,
            "since": since, "feedback": feedback_since(feedback, kind, since),
            "triton": None if isinstance(status.get("loaded"), dict) else status.get("loaded")}


@router.get("/models")
def models_page(request: Request) -> Response:
    session = _ops(reader_session(request))
    port = _port(request)
    feedback = port.feedback()
    views = [_model_view(port, name, kind, feedback) for name, kind in port.models()]
    return render(request, "models.html", {"session": session, "models": views})


def _target(port: ModelsPort, model: str, version: str) -> tuple[str, int | None]:
    names = [name for name, _ in port.models()]
    if model not in names:
        raise HTTPException(400, f"model is one of {', '.join(names)}.")
    if not version:
        return model, None
    if not version.isdigit() or len(version) > 18:
        raise HTTPException(400, "A version is a whole number.")
    return model, int(version)


def _act(request: Request, action: str, model: str, version: str, confirm: str, csrf: str) -> Response:
    """Without ``confirm=yes`` a page that asks for it (nothing changes); with it, the CLI's function runs and the
    audit gets the routing before and after, or the error when it was refused or failed."""
    session = _ops(writer_session(request, csrf))
    user, port, ledger = str(session.user), _port(request), console(request).ledger
    name, number = _target(port, model, version)
    before = port.status(name)
    if confirm != "yes":
        return render(request, "models_confirm.html", {"session": session, "action": action, "name": name,
                                                        "version": number, "before": roles(before)})
    do = port.promote if action == "promote" else port.rollback
    try:
        served = do(name, number, f"console: {action} by {user}")
    except TonewatchError as exc:
        ledger.audit(AuditEntry(user, f"{action} failed", name, roles(before),
                                {"version": number, "error": str(exc)}))
        if isinstance(exc, ModelActionRefused):
            raise HTTPException(409, f"{action} refused: {exc}") from exc
        raise
    ledger.audit(AuditEntry(user, action, name, roles(before), {**roles(port.status(name)), "serving": served}))
    return RedirectResponse("/models", status_code=303)


@router.post("/models/promote")
def promote(request: Request, model: Text = "", version: Text = "", confirm: Text = "",
            csrf: Text = "") -> Response:
    """``tonewatch models promote MODEL [VERSION]``: the candidate (or VERSION) becomes production."""
    return _act(request, "promote", model, version, confirm, csrf)


@router.post("/models/rollback")
def rollback(request: Request, model: Text = "", to: Text = "", confirm: Text = "", csrf: Text = "") -> Response:
    """``tonewatch models rollback MODEL [--to N]``: drop the candidate, else serve the previous production."""
    return _act(request, "rollback", model, to, confirm, csrf)
