"""The history store's errors: the database failing, and topic records that cannot become rows."""

from __future__ import annotations

from tonewatch.core.errors import InvalidInput, ServiceError


class StoreError(ServiceError):
    """The database is unreachable or refused a statement; the batch was rolled back whole."""


class InvalidRecord(InvalidInput):
    """A topic record that cannot become a row; ``reason`` says what it lacks (dead-lettered with it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
