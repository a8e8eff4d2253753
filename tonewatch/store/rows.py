"""Topic records as table rows, in each table's column order (tonewatch/store/migrations): pure, no database.

A record that cannot become a row raises :class:`InvalidRecord` with the reason; the sink dead-letters it
rather than let the database refuse a whole batch. JSON columns travel as JSON text (cast to jsonb in the SQL).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from streams.control.rejects import load_json
from tonewatch.core.errors import InvalidInput
from tonewatch.store.errors import InvalidRecord

KINDS = ("trends", "alerts", "incidents", "scored", "model_events")

Row = tuple[Any, ...]
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # \u0000 in JSON text, not an escaped backslash before "u0000"


def _get(rec: Mapping[str, Any], field: str, required: bool) -> Any:
    value = rec.get(field)
    if value is None and required:
        raise InvalidRecord(f"no '{field}'")
    return value


def _storable(value: str, field: str) -> str:
    """Text PostgreSQL takes: no NUL, and UTF-8 (JSON may carry a lone surrogate escape, which is not)."""
    if "\x00" in value:
        raise InvalidRecord(f"'{field}' contains a NUL character")
    if value.isascii():  # most are: no copy to encode (the sink's hot path, rows per second)
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecord(f"'{field}' is not valid Unicode ({exc.reason})") from None
    return value


def _text(rec: Mapping[str, Any], field: str, required: bool = True) -> str | None:
    value = _get(rec, field, required)
    if value is None:
        return None
    if not isinstance(value, str) or (required and not value):
        raise InvalidRecord(f"'{field}' must be a non-empty string")
    return _storable(value, field)


def _int(rec: Mapping[str, Any], field: str, required: bool = True) -> int | None:
    value = _get(rec, field, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise InvalidRecord(f"'{field}' must be a 32-bit integer")
    return value


def _float(rec: Mapping[str, Any], field: str, required: bool = False, name: str | None = None) -> float | None:
    """``name``: the field as the reason spells it (``window.start`` for a field of ``window``)."""
    value = _get(rec, field, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRecord(f"'{name or field}' must be a finite number")
    return float(value)


def timestamp(value: Any, field: str) -> datetime:
    """An epoch (seconds) or an ISO-8601 time with a timezone, as an aware UTC datetime."""
    try:
        if isinstance(value, datetime):
            ts = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            ts = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            ts = datetime.fromisoformat(value)
        else:
            raise InvalidRecord(f"'{field}' must be an epoch or an ISO-8601 time, got {type(value).__name__}")
        if ts.tzinfo is None:
            raise InvalidRecord(f"'{field}' needs a timezone (ISO-8601 with Z or an offset)")
        return ts.astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidRecord(f"'{field}' is not a valid time: {exc}") from exc


def _ts(rec: Mapping[str, Any], field: str, required: bool = True) -> datetime | None:
    value = _get(rec, field, required)
    if value is None or value == "":  # model events default ``at`` to ""
        if required:
            raise InvalidRecord(f"no '{field}'")
        return None
    return timestamp(value, field)


def _texts(rec: Mapping[str, Any], field: str) -> list[str]:
    value = rec.get(field)
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidRecord(f"'{field}' must be a list of strings")
    return [_storable(v, field) for v in value]


def _object(rec: Mapping[str, Any], field: str) -> dict[str, Any]:
    """An object field, its own fields named ``field.name`` for the reasons."""
    value = rec.get(field)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRecord(f"'{field}' must be an object")
    return {f"{field}.{k}": v for k, v in value.items()}


def _mapping(rec: Mapping[str, Any], field: str) -> dict[str, Any]:
    """An object field as it is (``_object`` without the renaming: only its JSON is stored)."""
    value = rec.get(field)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, Mapping):
        raise InvalidRecord(f"'{field}' must be an object")
    return dict(value)


def _json(value: Any) -> str:
    """JSON text jsonb accepts: no NaN or Infinity, no NUL (``\\u0000``)."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(f"not representable as JSON: {exc}") from exc
    # the substring first: the pattern tries every position, a quarter of mapping a scored record
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise InvalidRecord("contains a NUL character (\\u0000), which PostgreSQL's jsonb cannot hold")
    return _storable(text, "record")


def trends_row(rec: Mapping[str, Any]) -> Row:
    """streams/windows/trends.py ``trend_record``; the share is its ``negative_share``."""
    count, negative = _int(rec, "count"), _int(rec, "negative")
    share = _float(rec, "negative_share")
    if share is None:  # records are written with it; derive it rather than refuse a row that has the counts
        share = negative / count if count and negative else 0.0
    return (_text(rec, "dimension"), _text(rec, "key"), _ts(rec, "window_start"), _ts(rec, "window_end"),
            count, negative, share, _float(rec, "corrected_share"), _float(rec, "baseline"),
            _float(rec, "corrected_baseline"), _float(rec, "z"), _json(dict(rec)))


def alerts_row(rec: Mapping[str, Any]) -> Row:
    """streams/windows/alerts.py ``alert_payload``: ``id``, ``window.start``/``end``, ``score``, ``reason``."""
    window = _object(rec, "window")
    top = rec.get("top_messages")
    if top is not None and not isinstance(top, list):
        raise InvalidRecord("'top_messages' must be a list")
    return (_text(rec, "id"), _text(rec, "status"), _text(rec, "dimension"), _text(rec, "key"),
            _text(rec, "severity"), _ts(window, "window.start"), _ts(window, "window.end"), _float(rec, "score"),
            _text(rec, "reason"), _json(top or []), _json(dict(rec)))


def _incident_tickers(rec: Mapping[str, Any]) -> list[str]:
    """Its ticker children, and the tickers its children's driving messages are about (what relates them)."""
    children = rec.get("children")
    if children is None:
        return []
    if not isinstance(children, list) or not all(isinstance(c, Mapping) for c in children):
        raise InvalidRecord("'children' must be a list of objects")
    found = {c["key"] for c in children if c.get("dimension") == "ticker" and isinstance(c.get("key"), str)}
    for c in children:
        found.update(_texts(c, "tickers"))
    return sorted(t.upper() for t in found)


def incidents_row(rec: Mapping[str, Any]) -> Row:
    """tonewatch/notify/incidents.py ``incident_record``: opened at its window's start."""
    return (_text(rec, "id"), _int(rec, "version"), _text(rec, "severity"), _text(rec, "status"),
            _incident_tickers(rec), _ts(_object(rec, "window"), "window.start", required=False), _json(dict(rec)))


def scored_row(rec: Mapping[str, Any]) -> Row:
    """streams/records.py ``Scored.to_json``; ``p_negative`` is its sentiment_probs' negative."""
    sentiment = _mapping(rec, "sentiment_probs")
    p_negative = _float(sentiment, "negative", name="sentiment_probs.negative") or 0.0  # as Scored.p_negative
    probs = {"sentiment": sentiment, "topic": _mapping(rec, "topic_probs")}
    return (_text(rec, "id"), _ts(rec, "ts"), _text(rec, "source"), _text(rec, "text"), _text(rec, "sentiment"),
            p_negative, _json(probs), _text(rec, "topic"),
            _texts(rec, "tickers"), _texts(rec, "sectors"), _json(_mapping(rec, "model_versions")))


def event_key(rec: Mapping[str, Any]) -> str:
    """Model events carry no id: the hash of the canonical JSON names one event, the same in every replay."""
    canonical = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def model_events_row(rec: Mapping[str, Any]) -> Row:
    """streams/control/routing.py ``ModelEvent.to_dict`` and drift.py ``DriftEvent.as_dict``; ``kind`` is the
    record's ``event`` (a drift record's own ``kind``, class_mix or confidence, stays in the payload)."""
    version = rec.get("version")
    if isinstance(version, bool) or not isinstance(version, int | str | None):
        raise InvalidRecord("'version' must be an integer or a string")
    payload = _json(dict(rec))  # first: refuses NaN before the key's hash would
    return (event_key(rec), _ts(rec, "at", required=False), _text(rec, "event"), _text(rec, "model"),
            None if version is None else str(version), payload)


_MAPPERS: dict[str, Callable[[Mapping[str, Any]], Row]] = {
    "trends": trends_row, "alerts": alerts_row, "incidents": incidents_row, "scored": scored_row,
    "model_events": model_events_row,
}


def json_object(value: bytes | None, kind: str) -> dict[str, Any]:
    """A record's value as the JSON object it must be; the refusal's reason names the kind, as :func:`to_row`'s."""
    try:
        doc = load_json(value)
    except InvalidInput as exc:
        raise InvalidRecord(f"{kind} record: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRecord(f"{kind} record: not a JSON object but {type(doc).__name__}")
    return doc


def to_row(kind: str, record: Mapping[str, Any]) -> Row:
    """The row of ``record`` for the table of ``kind`` (one of :data:`KINDS`)."""
    mapper = _MAPPERS.get(kind)
    if mapper is None:
        raise InvalidRecord(f"unknown kind '{kind}' (known: {', '.join(KINDS)})")
    if not isinstance(record, Mapping):
        raise InvalidRecord(f"expected a JSON object, got {type(record).__name__}")
    try:
        return mapper(record)
    except InvalidRecord as exc:
        raise InvalidRecord(f"{kind} record: {exc.reason}") from None
