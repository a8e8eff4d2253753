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


def _plain(*texts: str) -> bool:
    """Non-empty, and nothing PostgreSQL refuses. msgspec already refused invalid UTF-8, unpaired surrogates and
    numbers that are not finite (NaN, 1e999), which jsonb cannot hold either."""
    return all(t and "\x00" not in t for t in texts)


def scored_row_from_json(raw: bytes) -> Row | None:
    """The ``messages`` row of a scored record, or ``None`` for :func:`~tonewatch.store.rows.to_row` to decide."""
    try:
        doc = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):  # ValidationError is a DecodeError; named for readers
        return None
    probs = {"sentiment": doc.sentiment_probs, "topic": doc.topic_probs}
    if not _plain(doc.id, doc.source, doc.text, doc.sentiment, doc.topic):
        return None
    probs_json = _ENCODER.encode(probs).decode()
    versions_json = _ENCODER.encode(doc.model_versions).decode()
    if "\\u0000" in probs_json or "\\u0000" in versions_json or "\x00" in "".join(doc.tickers + doc.sectors):
        return None
    try:
        ts = timestamp(doc.ts, "ts")
    except ValueError:  # InvalidRecord is one: to_row gives the reason
        return None
    return (doc.id, ts, doc.source, doc.text, doc.sentiment, doc.sentiment_probs.get("negative", 0.0), probs_json,
            doc.topic, doc.tickers, doc.sectors, versions_json)
