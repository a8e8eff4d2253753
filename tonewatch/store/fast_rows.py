"""A scored record's row straight from its bytes, for the sink's hot path (scored rows are nearly every row).

Parsing a record into Python objects and dumping its probability maps back to JSON for the jsonb columns was
about 40 µs of the sink's time a row; msgspec decodes into the fields the row needs and encodes the maps again
in a fifth of that (benchmarks/sink_rate.py). This path only takes records it can take whole: anything it does
not recognise (a field of another type, an empty or non-finite value, a NUL) returns ``None``, and the caller
maps the record with :func:`tonewatch.store.rows.to_row`, whose row or refusal (with its reason) stands.
"""

from __future__ import annotations

import msgspec

from tonewatch.store.rows import Row, timestamp


class _Scored(msgspec.Struct):
    """The fields of streams/records.py ``Scored.to_json`` that the ``messages`` row holds."""

    id: str
    ts: str | float
    source: str
    text: str
    sentiment: str
    sentiment_probs: dict[str, float]
    topic: str
    topic_probs: dict[str, float]
    model_versions: dict[str, str]
    tickers: list[str] = []
    sectors: list[str] = []


_DECODER = msgspec.json.Decoder(_Scored)
_ENCODER = msgspec.json.Encoder()


def _has_nul(raw: bytes) -> bool:
    """Whether the record may hold a NUL, which PostgreSQL's text and jsonb refuse. JSON escapes it (a raw control
    character is invalid JSON, and msgspec refuses it), so one search of the bytes covers every field; an escaped
    backslash before ``u0000`` is a false alarm, and sends the record down the careful path."""
    return b"\\u0000" in raw


def scored_row_from_json(raw: bytes) -> Row | None:
    """The ``messages`` row of a scored record, or ``None`` for :func:`~tonewatch.store.rows.to_row` to decide."""
    if _has_nul(raw):
        return None
    try:
        doc = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):  # ValidationError is a DecodeError; named for readers
        return None
    if not (doc.id and doc.source and doc.text and doc.sentiment and doc.topic):
        return None
    probs_json = _ENCODER.encode({"sentiment": doc.sentiment_probs, "topic": doc.topic_probs}).decode()
    versions_json = _ENCODER.encode(doc.model_versions).decode()
    try:
        ts = timestamp(doc.ts, "ts")
    except ValueError:  # InvalidRecord is one: to_row gives the reason
        return None
    return (doc.id, ts, doc.source, doc.text, doc.sentiment, doc.sentiment_probs.get("negative", 0.0), probs_json,
            doc.topic, doc.tickers, doc.sectors, versions_json)
