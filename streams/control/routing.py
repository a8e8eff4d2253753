"""Which model version scores which message: a pure fold of the model-events topic.

Canary routing hashes the message id: the same version on every worker and every redelivery
(docs/decisions/2026-12-07-model-events-routing.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from tonewatch.core.errors import InvalidInput

EVENTS = ("loaded", "canary", "shadow", "promoted", "rolled_back", "unloaded", "drift")
Mode = Literal["none", "canary", "shadow"]


class InvalidEvent(InvalidInput):
    """A model-events record that cannot be applied."""


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
    def from_dict(cls, d: Mapping[str, Any]) -> ModelEvent:
        try:
            ev = cls(model=str(d["model"]), version=int(d["version"]), event=str(d["event"]),
                     share=None if d.get("share") is None else float(d["share"]), reason=str(d.get("reason", "")),
                     at=str(d.get("at", "")), by=str(d.get("by", "")),
                     to=None if d.get("to") is None else int(d["to"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent(f"bad model event {dict(d)}: {exc}") from exc
        if ev.event not in EVENTS:
            raise InvalidEvent(f"unknown model event '{ev.event}' (known: {', '.join(EVENTS)})")
        if ev.event == "canary" and not (ev.share is not None and 0 < ev.share <= 1):
            raise InvalidEvent(f"canary share must be in (0, 1], got {ev.share}")
        return ev

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Route:
    """Routing of one model; ``production`` None means no event yet: Triton's default version serves."""

    production: int | None = None
    candidate: int | None = None
    mode: Mode = "none"
    share: float = 0.0


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
