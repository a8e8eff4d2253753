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
from functools import cached_property
from typing import Any, Literal

import pydantic_core
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


class InvalidMessage(InvalidInput):
    """A message that cannot enter the pipeline; ``reason`` goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Message(BaseModel):
    """A news headline or chat message as produced onto the news/chat topics."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=128)
    source: Literal["news", "chat"]
    ts: datetime
    text: str = Field(min_length=1)
    tickers: tuple[str, ...] = ()
    author: str | None = Field(None, max_length=200)
    channel: str | None = Field(None, max_length=200)

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

    @cached_property
    def epoch(self) -> float:  # read several times per message on the hot path
        return self.ts.timestamp()


def parse_message(raw: bytes | str | None, limits: ScoringSettings, now: float | None = None) -> Message:
    """Decode and validate one raw Kafka value, or raise :class:`InvalidMessage` (``now``: for tests).

    An event time more than ``limits.max_future_s`` ahead of the clock is refused: it would move its partition's
    time ahead and make the on-time messages after it late (streams/score/clock.py). So is a message naming more
    than ``limits.max_tickers`` tickers: each would become a key with its own state."""
    if raw is None or raw in (b"", ""):
        raise InvalidMessage("empty message")
    if len(raw) > limits.max_message_bytes:  # characters of a str: only tests pass one
        raise InvalidMessage(f"{len(raw)} bytes: at most {limits.max_message_bytes} per message")
    try:  # the common case in one pass of Rust; the reason of a failure comes from the slow path below
        msg = Message.model_validate_json(raw)
        surrogates_possible = False  # pydantic's JSON parser refuses unpaired surrogate escapes
    except ValidationError:
        msg = _validate_slowly(raw)
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


def _validate_slowly(raw: bytes | str) -> Message:
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
        return Message.model_validate(data)
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
        return pydantic_core.to_json(self)
