"""A real PostgreSQL for the store's tests (Debian's postgresql-15, as ``tonewatch up`` runs it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tonewatch.stack.postgres import PostgresProcess, start_postgres
from tonewatch.stack.procs import stop


@contextlib.contextmanager
def running_postgres(folder: Path) -> Iterator[PostgresProcess]:
    """A server with an empty ``tonewatch`` database, stopped at the end. Close connections first: SIGTERM is
    PostgreSQL's smart shutdown, which waits for them (procs.stop kills it after 20 s)."""
    pg = start_postgres(folder)
    try:
        yield pg
    finally:
        stop(pg.pid)
