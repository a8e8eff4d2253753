"""The console's FastAPI app, built from its collaborators (``create_app``): tests pass fakes, ``tonewatch console``
the PostgreSQL store and the Kafka topics (tonewatch/console/pg.py)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote

from argon2 import PasswordHasher
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from tonewatch.console import actions, models_page, pages
from tonewatch.console.auth import Authenticator, LoginLimiter, Sessions, User
from tonewatch.console.models_port import ModelsPort
from tonewatch.console.ports import ConsoleLedger, ConsoleReader, ConsoleWriter
from tonewatch.console.web import HERE, Console, SignInRequired, render, templates
from tonewatch.core.errors import ServiceError
from tonewatch.core.service_sections import ConsoleSettings

# pages are the console's own: no script, no frame, no form posting elsewhere, no third-party anything
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# the statuses the console answers with a page (the rest keep FastAPI's JSON)
ERROR_PAGES = (400, 403, 404, 405, 409, 429)


def create_app(settings: ConsoleSettings, users: Mapping[str, User], reader: ConsoleReader, ledger: ConsoleLedger,
               writer: ConsoleWriter, *, models: ModelsPort | None = None, hasher: PasswordHasher | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The app; ``models`` serves the Models page (none: no such page); ``hasher`` and ``clock`` are for tests
    (cheap argon2 parameters, a clock they move)."""
    secret = settings.session_secret.get_secret_value() if settings.session_secret else secrets.token_urlsafe(32)
    app = FastAPI(title="Tonewatch console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = Console(
        settings=settings, auth=Authenticator(users, hasher), sessions=Sessions(secret, settings.session_hours, clock),
        limiter=LoginLimiter(settings.login_attempts, settings.login_window_s, clock), reader=reader, ledger=ledger,
        writer=writer, templates=templates(), models=models)
    app.include_router(actions.router)
    app.include_router(pages.router)
    app.include_router(models_page.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    _handlers(app)
    return app


def _handlers(app: FastAPI) -> None:
    """Errors as pages a person reads; a page asked for without a session sends the browser to sign in."""

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_url, safe='')}", status_code=303)

    async def http_error(request: Request, exc: Exception) -> Response:
        status, detail = getattr(exc, "status_code", 500), getattr(exc, "detail", "")
        response = render(request, "error.html", {"status": status, "detail": detail}, status_code=status)
        for name, value in (getattr(exc, "headers", None) or {}).items():
            response.headers[name] = value
        return response

    # by status code: these catch the router's own 404 and 405 too, whose exception class is Starlette's
    for status in ERROR_PAGES:
        app.add_exception_handler(status, http_error)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        # the store or Kafka failed: nothing was written past the failing step, and the page says so
        return render(request, "error.html", {"status": 503, "detail": str(exc)}, status_code=503)
