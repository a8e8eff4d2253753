"""What the console talks to, as interfaces: the store it reads, the ledger it records actions in, and the Kafka
topics it writes. ``create_app`` takes one of each, so tests hand it in-memory fakes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from models.feedback import Feedback

Row = dict[str, Any]
VerdictValue = Literal["true_alarm", "false_alarm"]


@dataclass(frozen=True)
class InboxFilter:
    """The inbox's query parameters; None matches anything. ``status`` is an incident status, or ``open`` (not
    resolved) or ``all``."""

    severity: str | None = None
    dimension: str | None = None
    key: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One audit row: who did what to which target, with the state before and after (JSON-able)."""

    username: str
    action: str
    target: str | None = None
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class Verdict:
    incident_id: str
    verdict: VerdictValue
    username: str
    note: str | None = None


class ConsoleReader(Protocol):
    """Reads of the history store; rows are dicts with the schema's column names."""

    def incidents(self, where: InboxFilter, limit: int) -> list[Row]:
        """The latest version of each incident, newest first, each with its verdict (``verdict`` may be None)."""
        ...

    def incident(self, incident_id: str) -> Row | None:
        """The latest version of one incident, with its verdict."""
        ...

    def key_windows(self, dimension: str, key: str, start: datetime, end: datetime) -> list[Row]:
        """A key's trend windows starting in [start, end), oldest first."""
        ...

    def latest_window(self, dimension: str, key: str) -> datetime | None:
        """The start of a key's newest trend window."""
        ...

    def trend(self, key: str, since: datetime) -> list[Row]:
        """A ticker's windows from ``since`` on."""
        ...

    def alerts(self, key: str, since: datetime) -> list[Row]:
        """A key's alert state changes whose windows start from ``since`` on."""
        ...

    def messages(self, ids: Sequence[str], start: datetime, end: datetime) -> list[Row]:
        """Scored messages by id with event times in [start, end), most negative first."""
        ...

    def message(self, message_id: str, ts: datetime) -> Row | None:
        """One scored message by its key."""
        ...

    def ticker_messages(self, ticker: str, since: datetime, limit: int) -> list[Row]:
        """A ticker's messages from ``since`` on, most negative first."""
        ...


class ConsoleLedger(Protocol):
    """The console's own tables: the audit and the verdicts."""

    def audit(self, entry: AuditEntry) -> None: ...

    def save_verdict(self, verdict: Verdict, entry: AuditEntry) -> None:
        """Store the verdict (replacing the incident's earlier one) and its audit row, both or neither."""
        ...


class ConsoleWriter(Protocol):
    """The Kafka topics the CLI writes too: acks and analyst feedback."""

    def ack(self, record: dict[str, Any]) -> None: ...

    def feedback(self, records: list[Feedback]) -> None: ...
