"""Control records (model events, the notifier's state topics) that cannot be applied.

Anyone with write access to a control topic can put anything there, and every reader replays it from the
beginning: a record that raised would stop the reader at every start. So a record is decoded and checked
here, and every failure is one :class:`InvalidRecord` with a short reason that never quotes the payload.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from pydantic import ValidationError

from tonewatch.core.errors import InvalidInput

PREVIEW_CHARS = 60


class InvalidRecord(InvalidInput):
    """A control record that is skipped; ``reason`` says why, without quoting the payload."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_json(raw: bytes | str | None) -> Any:
    """The record's JSON document; not UTF-8, not JSON, nested too deeply or empty: InvalidRecord.

    pydantic-core's parser, not ``json``: it refuses invalid UTF-8, unpaired surrogates and deep nesting
    with a ValueError, where ``json`` raises UnicodeDecodeError or RecursionError."""
    if raw is None or raw in (b"", ""):
        raise InvalidRecord("empty record")
    try:
        return pydantic_core.from_json(raw)
    except ValueError as exc:
        raise InvalidRecord(f"not JSON: {exc}") from exc


def validation_reason(exc: ValidationError, most: int = 3) -> str:
    """``version: Field required; share: Input should be a finite number``, without the input values
    (pydantic's ``str(exc)`` quotes them: the payload would reach logs)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in errors[:most]]
    more = f" (+{len(errors) - most} more)" if len(errors) > most else ""
    return "; ".join(parts) + more


def preview(raw: bytes | str | None, chars: int = PREVIEW_CHARS) -> str:
    """A short, printable excerpt of a payload for a log line: control, bidi and other non-printable
    characters become '?', so a record cannot forge log lines or reorder what a terminal shows."""
    if raw is None:
        return "<none>"
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    cut = "".join(c if c.isprintable() else "?" for c in text[:chars])
    return cut + (f"... ({len(raw)} {'bytes' if isinstance(raw, bytes) else 'chars'})" if len(text) > chars else "")
