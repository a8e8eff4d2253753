"""Wire records: what producers may send, and what the pipeline emits.

Messages travel as JSON so any producer (not only Python) can feed Tonewatch;
validation happens once, here, and every failure carries a human-readable reason.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tonewatch.core.errors import InvalidInput
from tonewatch.core.sections import ScoringSettings

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# bidi overrides and marks: a name that prints differently from what it is (logs, terminals, dashboards)
_BIDI = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_TICKER = re.compile(r"[A-Z0-9.\-]+")
_SEPARATORS = re.compile(r"[\s,$]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # JSON may escape them; no UTF-8 output can carry them
_MAX_TICKER = 16
_MAX_ID, _MAX_PERSON = 128, 200  # characters


class InvalidMessage(InvalidInput):
    """A message that cannot enter the pipeline; ``reason`` goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A news headline or chat message as produced onto the news/chat topics, once validated
    (:func:`parse_message`): text fields stripped, ``ts`` in UTC, tickers upper-case symbols."""

    id: str
    source: Literal["news", "chat"]
    ts: datetime
    text: str
    tickers: tuple[str, ...] = ()
    author: str | None = None
    channel: str | None = None

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()


def normalise_tickers(v: Any) -> tuple[str, ...]:
    """Producer-given tickers as symbols, or ValueError saying why they cannot be."""
    if v is None:
        return ()
    if not isinstance(v, list | tuple) or not all(isinstance(t, str) for t in v):
        raise ValueError("tickers must be a list of symbols")
    # "BWV $AUVI $DTC" (seen in real chat data) is three symbols
    symbols = tuple(s for t in v for s in _SEPARATORS.split(t.upper()) if s)
    if any(len(t) > _MAX_TICKER for t in symbols):
        raise ValueError(f"ticker longer than {_MAX_TICKER} characters")
    if not all(_TICKER.fullmatch(t) for t in symbols):
        raise ValueError("a ticker may hold only A-Z, 0-9, '.' and '-'")
    return symbols


class MessageSchema(BaseModel):
    """What a message may be, as pydantic checks it: the rules, and the reason when one is broken. Only a
    message the fast path (:func:`decode_plain`) declines is checked here."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=_MAX_ID)
    source: Literal["news", "chat"]
    ts: datetime
    text: str = Field(min_length=1)
    tickers: tuple[str, ...] = ()
    author: str | None = Field(None, max_length=_MAX_PERSON)
    channel: str | None = Field(None, max_length=_MAX_PERSON)

    @field_validator("ts")
    @classmethod
    def _aware_utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("timestamp needs a timezone (ISO-8601 with Z or an offset)")
        try:
            return v.astimezone(UTC)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00 has no UTC equivalent
            raise ValueError("timestamp out of range in UTC") from exc

    @field_validator("tickers", mode="before")
    @classmethod
    def _tickers(cls, v: Any) -> Any:
        return normalise_tickers(v)

    def message(self) -> Message:
        return Message(id=self.id, source=self.source, ts=self.ts, text=self.text, tickers=self.tickers,
                       author=self.author, channel=self.channel)


class _Wire(msgspec.Struct, frozen=True):
    """A message as it arrives, before the rules pydantic would apply on top (stripping, UTC, symbols)."""

    id: str
    source: Literal["news", "chat"]
    ts: str
    text: str
    tickers: tuple[str, ...] | None = ()
    author: str | None = None
    channel: str | None = None


_WIRE = msgspec.json.Decoder(_Wire)
# the RFC 3339 form every producer here writes; anything else pydantic parses (or refuses, with a reason)
_PLAIN_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)")


def _trimmed(text: str | None, most: int | None = None) -> bool:
    """Whether stripping would leave ``text`` as it is, and it fits ``most`` characters (if given)."""
    if not text:
        return True
    return (most is None or len(text) <= most) and not (text[0].isspace() or text[-1].isspace())


def decode_plain(raw: bytes | str) -> Message | None:
    """The message, when ``raw`` is one that needs nothing pydantic would change: the same message
    :class:`MessageSchema` gives (tests/unit/test_plain_messages.py checks that). None for anything else."""
    try:
        w = _WIRE.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # pydantic says whether, and why, it is wrong
        return None
    if not (w.id and w.text and _trimmed(w.id, _MAX_ID) and _trimmed(w.text)
            and _trimmed(w.author, _MAX_PERSON) and _trimmed(w.channel, _MAX_PERSON)):
        return None
    if _PLAIN_TS.fullmatch(w.ts) is None:
        return None
    try:
        ts = datetime.fromisoformat(w.ts).astimezone(UTC)
        tickers = normalise_tickers(w.tickers)
    except (ValueError, OverflowError):
        return None
    return Message(id=w.id, source=w.source, ts=ts, text=w.text, tickers=tickers, author=w.author, channel=w.channel)


def parse_message(raw: bytes | str | None, limits: ScoringSettings, now: float | None = None) -> Message:
    """Decode and validate one raw Kafka value, or raise :class:`InvalidMessage` (``now``: for tests).

    An event time more than ``limits.max_future_s`` ahead of the clock is refused: it would move its partition's
    time ahead and make the on-time messages after it late (streams/score/clock.py). So is a message naming more
    than ``limits.max_tickers`` tickers: each would become a key with its own state."""
    if raw is None or raw in (b"", ""):
        raise InvalidMessage("empty message")
    if len(raw) > limits.max_message_bytes:  # characters of a str: only tests pass one
        raise InvalidMessage(f"{len(raw)} bytes: at most {limits.max_message_bytes} per message")
    msg = decode_plain(raw)  # the common case, in one pass of msgspec's C (docs/decisions: slotted-scored-record)
    # neither JSON parser accepts an unpaired surrogate escape; only the step-by-step path's json.loads does
    surrogates_possible = False
    if msg is None:
        try:
            msg = MessageSchema.model_validate_json(raw).message()
        except ValidationError:  # the reason comes from the step-by-step path below
            msg = _validate_slowly(raw).message()
            surrogates_possible = True
    if msg.epoch > (time.time() if now is None else now) + limits.max_future_s:
        raise InvalidMessage(f"timestamp {msg.ts.isoformat()} is more than {limits.max_future_s:g}s in the future")
    if len(msg.text) > limits.max_text_chars:
        raise InvalidMessage(f"text too long: {len(msg.text)} > {limits.max_text_chars} characters")
    if len(msg.tickers) > limits.max_tickers:
        raise InvalidMessage(f"{len(msg.tickers)} tickers: at most {limits.max_tickers} per message")
    if any(_BIDI.search(v) for v in (msg.id, msg.author or "", msg.channel or "")):
        raise InvalidMessage("id, author or channel contains bidirectional-text control characters")
    if _CONTROL.search(msg.text):
        raise InvalidMessage("text contains control characters")
    if _CONTROL.search(msg.id):  # the id keys the scored topic and is logged
        raise InvalidMessage("id contains control characters")
    if surrogates_possible and any(
        _SURROGATE.search(v) for v in (msg.id, msg.text, msg.author or "", msg.channel or "", *msg.tickers)
    ):
        raise InvalidMessage("unpaired UTF-16 surrogate escape (\\udXXX) in a text field")
    return msg


def _validate_slowly(raw: bytes | str) -> MessageSchema:
    """Step by step, for the precise reason a message is invalid (pydantic's JSON errors are terse)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise InvalidMessage("not JSON: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer literal beyond Python's 4300-digit limit
        raise InvalidMessage(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(data).__name__}")
    try:
        return MessageSchema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise InvalidMessage(f"invalid field '{where}': {first['msg']}") from exc


@dataclass(slots=True, kw_only=True)
class Scored:
    """A message with both models' outputs; the unit of the scored topic.

    A slotted dataclass, not a pydantic model, to keep the per-message path cheap
    (docs/decisions/2026-12-07-slotted-scored-record.md). Treat it as immutable; ``to_json`` writes the
    record (datetimes as ISO-8601 with ``Z``).
    """

    id: str
    source: Literal["news", "chat"]
    ts: datetime
    text: str  # PII-masked for chat
    tickers: tuple[str, ...]
    sectors: tuple[str, ...] = ()
    sentiment: str
    sentiment_probs: dict[str, float]
    topic: str
    topic_probs: dict[str, float]
    model_versions: dict[str, str]  # per model, the version that scored this message
    candidate: dict[str, dict[str, str]] = field(default_factory=dict)  # rollout: a shadow's label or a failed canary
    scored_at: datetime
    inference_ms: float

    @property
    def p_negative(self) -> float:
        return self.sentiment_probs.get("negative", 0.0)

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)
