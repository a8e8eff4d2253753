"""Rows as PostgreSQL COPY text, made by the sink's reading thread while the writing thread waits on the database.

psycopg formats COPY rows through its generic adapters: 13 µs of a scored row, on the writer's thread, where
it held the GIL the reader needed and delayed the database. The row's types are few and known (rows.py), so a
line is a few string operations here; the writer then only sends the text (docs/store.md#performance).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from tonewatch.store.rows import Row


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def array_literal(items: list[str] | tuple[str, ...]) -> str:
    """A ``text[]`` literal, every element quoted (rows.py's lists hold strings only)."""
    return "{" + ",".join('"' + e.replace("\\", "\\\\").replace('"', '\\"') + '"' for e in items) + "}"


def _array(items: list[str] | tuple[str, ...]) -> str:
    return _escaped(array_literal(items))


def _boolean(value: bool) -> str:
    return "t" if value else "f"


# by exact type: a row's fields are these (rows.py); anything else is refused rather than guessed
_FORMATS: dict[type, Callable[[Any], str]] = {
    str: _escaped, datetime: datetime.isoformat, float: repr, int: repr, bool: _boolean, list: _array, tuple: _array,
}


def copy_field(value: Any) -> str:
    """One field of COPY's text format: ``\\N`` for NULL, special characters escaped."""
    if value is None:
        return "\\N"
    try:
        return _FORMATS[type(value)](value)
    except KeyError:
        raise TypeError(f"no COPY text for {type(value).__name__}") from None


def copy_line(row: Row) -> str:
    return "\t".join(map(copy_field, row)) + "\n"


class CopyRows(list[Row]):
    """Rows with their COPY text, made as each is appended; a writer that COPies them sends :attr:`lines`."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def append(self, row: Row) -> None:
        self.lines.append(copy_line(row))
        super().append(row)
