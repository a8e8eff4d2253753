"""Pure decisions of the notifier: retry backoff, response classification, escalation schedule."""

from __future__ import annotations

from typing import Literal

Outcome = Literal["delivered", "retry", "permanent"]


def backoff_s(attempt: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Delay before retry ``attempt`` (1 = first retry): exponential, capped, "full jitter".

    ``jitter`` is a number in [0, 1) from the caller's RNG, so the function stays pure; full
    jitter spreads retries of many notifiers after a shared outage instead of syncing them.
    """
    ceiling = min(cap_s, base_s * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + ceiling / 2 * jitter


def classify_status(code: int) -> Outcome:
    """2xx delivered; 408/429/5xx are worth retrying; any other 4xx will never succeed."""
    if 200 <= code < 300:
        return "delivered"
    if code in (408, 429) or code >= 500:
        return "retry"
    return "permanent"


def due_escalation(
    *,
    severity: str,
    status: str,
    acked: bool,
    notified_at: float,
    sent: int,
    now: float,
    interval_s: float,
    max_escalations: int,
) -> int | None:
    """The escalation number to send now for one subscription, or None.

    Only a still-firing, unacknowledged critical alert escalates; escalation ``n`` is due
    ``n * interval_s`` after the initial notification reached the subscriber.
    """
    if severity != "critical" or status != "firing" or acked or sent >= max_escalations:
        return None
    n = sent + 1
    return n if now >= notified_at + n * interval_s else None
