"""Enrichment that must happen before text is stored: tickers and PII masking."""

from __future__ import annotations

import re

from streams.pii import mask_pii

__all__ = ["extract_tickers", "mask_pii"]  # mask_pii lives in streams.pii; callers import it from here

_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,5}(?:\.[A-Za-z]{1,2})?)\b")


def extract_tickers(text: str, given: tuple[str, ...] = (), named: list[str] | None = None, *, most: int
                    ) -> tuple[str, ...]:
    """Producer-supplied tickers first, then cashtags, then companies named in the text; no duplicates, and
    at most ``most``: a text stuffed with cashtags must not make thousands of keys."""
    seen: dict[str, None] = dict.fromkeys(given)
    if "$" in text:  # most texts have no cashtag: skip the regex scan
        for match in _CASHTAG.finditer(text):
            seen.setdefault(match.group(1).upper(), None)
    for ticker in named or ():
        seen.setdefault(ticker, None)
    return tuple(seen)[:most]

