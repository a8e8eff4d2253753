"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"``.

The timestamp is inside the signed bytes, so a captured request cannot be replayed later with a
fresh timestamp; receivers reject timestamps outside a tolerance window.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Tonewatch-Signature`` header value for this body sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return PREFIX + mac.hexdigest()


def verify(
    secret: str, timestamp: str | int, body: bytes, signature: str, now: float, tolerance_s: float = 300
) -> bool:
    """What a receiver runs: signature matches (constant time) and the timestamp is recent."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)
