"""Which model version scores which message: a pure fold of the model-events topic.

Canary routing hashes the message id: the same version on every worker and every redelivery
(docs/decisions/2026-12-07-model-events-routing.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.control.rejects import InvalidRecord, load_json, preview, validation_reason

EVENTS = ("loaded", "canary", "shadow", "promoted", "rolled_back", "unloaded", "drift")
Mode = Literal["none", "canary", "shadow"]
MAX_VERSION = 2**63 - 1  # Triton's version numbers are int64


class InvalidEvent(InvalidRecord):
    """A model-events record that cannot be applied."""


class _Wire(BaseModel):
    """The shape of a model-events value. Strict: ``true`` or ``1.7`` is not version 1; the model name is a
    Triton model's and becomes a metric label, so it is a plain identifier."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    model: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,128}$")
    version: int = Field(ge=0, le=MAX_VERSION)
    event: str
    share: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    reason: str = ""
    at: str = ""
    by: str = ""
    to: int | None = Field(None, ge=0, le=MAX_VERSION)


@dataclass(frozen=True)
class ModelEvent:
    model: str
    version: int
    event: str
    share: float | None = None
    reason: str = ""
    at: str = ""
    by: str = ""
    to: int | None = None  # rolled_back: the version that serves from now on, if it changes

    @classmethod
    def from_dict(cls, d: Any) -> ModelEvent:
        """Validate a decoded record (any JSON value); raises :class:`InvalidEvent` and nothing else."""
        try:
            wire = _Wire.model_validate(d)
        except ValidationError as exc:
            raise InvalidEvent(f"bad model event: {validation_reason(exc)}") from exc
        if wire.event not in EVENTS:
            raise InvalidEvent(f"unknown model event '{preview(wire.event, 32)}' (known: {', '.join(EVENTS)})")
        if wire.event == "canary" and not (wire.share is not None and wire.share > 0):
            raise InvalidEvent(f"canary share must be in (0, 1], got {wire.share}")
        return cls(**wire.model_dump())

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Route:
    """Routing of one model; ``production`` None means no event yet: Triton's default version serves."""

    production: int | None = None
    candidate: int | None = None
    mode: Mode = "none"
    share: float = 0.0


def parse_event(raw: bytes | str | None) -> ModelEvent:
    """One model-events value; raises :class:`InvalidEvent` (not UTF-8, not JSON, wrong shape) and nothing else."""
    try:
        doc = load_json(raw)
    except InvalidRecord as exc:
        raise InvalidEvent(exc.reason) from exc
    return ModelEvent.from_dict(doc)


def apply_event(route: Route, ev: ModelEvent) -> Route:
    if ev.event == "canary":
        return replace(route, candidate=ev.version, mode="canary", share=ev.share or 0.0)
    if ev.event == "shadow":
        return replace(route, candidate=ev.version, mode="shadow", share=0.0)
    if ev.event == "promoted":
        return Route(production=ev.version)
    if ev.event in ("rolled_back", "unloaded") and route.candidate == ev.version:
        route = replace(route, candidate=None, mode="none", share=0.0)
    if ev.event == "rolled_back" and ev.to is not None:
        route = replace(route, production=ev.to)
    return route  # loaded and drift are informational


def fold(events: Iterable[ModelEvent], routes: Mapping[str, Route] | None = None) -> dict[str, Route]:
    out = dict(routes or {})
    for ev in events:
        out[ev.model] = apply_event(out.get(ev.model, Route()), ev)
    return out


def bucket(key: str) -> float:
    """A stable point in [0, 1) per key (not Python's salted hash)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick_version(route: Route, key: str) -> int | None:
    """The version that scores (and is published for) this key; None = Triton's default."""
    if route.mode == "canary" and route.candidate is not None and bucket(key) < route.share:
        return route.candidate
    return route.production


def shadow_version(route: Route) -> int | None:
    return route.candidate if route.mode == "shadow" else None
