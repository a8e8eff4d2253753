"""The Models page's collaborator: what ``tonewatch models status``, ``promote`` and ``rollback`` and the retrain
job's feedback reader give the CLI, as one interface. ``create_app(models=...)`` takes it, so tests hand in a fake;
``LiveModels`` (tonewatch/console/models_live.py) calls the CLI's own functions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from models.labels import LABELS
from tonewatch.core.errors import InvalidInput

if TYPE_CHECKING:
    from models.feedback import Feedback

Row = dict[str, Any]
# what an audit row keeps of a model's routing before and after promote or rollback
ROLE_FIELDS = ("production", "candidate", "mode", "share")


class ModelActionRefused(InvalidInput):
    """Promote or rollback refused before anything changed (no candidate, already production, not servable)."""


class ModelsPort(Protocol):
    def models(self) -> list[tuple[str, str]]:
        """The served models as (Triton name, label kind: ``sentiment`` or ``topic``)."""
        ...

    def status(self, name: str) -> Row:
        """``tonewatch models status NAME --json``: on_disk, loaded, production, candidate, mode, share,
        last_events."""
        ...

    def agreement(self, name: str, production: int, candidate: int) -> tuple[int, int]:
        """Shadow: (agreements, compared) of the candidate with production on recent scored messages."""
        ...

    def drift(self, name: str) -> list[Row]:
        """The latest drift event per version and kind (``version``, ``kind``, ``psi``, ``threshold``, ``at``)."""
        ...

    def card(self, name: str, version: int) -> str | None:
        """The version's MODEL_CARD.md, None when it has none."""
        ...

    def trained_at(self, name: str, version: int) -> datetime | None:
        """When the version was trained (its manifest's ``created``)."""
        ...

    def feedback(self) -> list[Feedback]:
        """Every stored correction, the latest per message and model (what ``tonewatch retrain`` reads)."""
        ...

    def promote(self, name: str, version: int | None, reason: str) -> int:
        """``tonewatch models promote NAME [VERSION]``; returns the version now production."""
        ...

    def rollback(self, name: str, to: int | None, reason: str) -> int:
        """``tonewatch models rollback NAME [--to N]``; returns the version now production."""
        ...


def roles(status: Row) -> Row:
    """The routing part of a status: what promote and rollback change."""
    return {k: status.get(k) for k in ROLE_FIELDS}


def feedback_since(records: Iterable[Feedback], kind: str, since: datetime | None) -> dict[str, int]:
    """Corrections of the ``kind`` model stored after ``since`` (all of them when None), per label, every label
    listed: a zero says as much as a count."""
    counts = dict.fromkeys(LABELS[kind], 0)
    for fb in records:
        if fb.model == kind and (since is None or fb.at > since):
            counts[fb.label] = counts.get(fb.label, 0) + 1
    return counts


def version_rows(status: Row, drift: list[Row], agreement: tuple[int, int] | None) -> list[Row]:
    """One row per version on disk or routed, newest first: its role (production, canary with its share, shadow
    with its agreement), whether Triton has it loaded, and its latest drift PSI per kind."""
    production, candidate, mode = status.get("production"), status.get("candidate"), status.get("mode")
    found = status.get("loaded")
    loaded: dict[str, str] = found if isinstance(found, dict) else {}  # a string: Triton unreachable
    versions = sorted({*status.get("on_disk", []), *(v for v in (production, candidate) if v is not None)},
                      reverse=True)
    rows = []
    for v in versions:
        role, detail = "-", None
        if v == production:
            role = "production"
        elif v == candidate and mode == "canary":
            role, detail = "canary", f"{float(status.get('share') or 0):.0%} of message ids"
        elif v == candidate and mode == "shadow":
            role = "shadow"
            detail = (f"agreement {agreement[0] / agreement[1]:.1%} on {agreement[1]} messages"
                      if agreement and agreement[1] else "agreement: no shadow-scored messages yet")
        psi = {d["kind"]: d for d in drift if str(d.get("version")) == str(v)}
        rows.append({"version": v, "role": role, "detail": detail, "loaded": loaded.get(str(v)), "drift": psi})
    return rows
