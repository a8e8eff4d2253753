"""Enrichment that must happen before text is stored: tickers and PII masking."""

from __future__ import annotations

import re

_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,5}(?:\.[A-Za-z]{1,2})?)\b")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}(?![\w.])")
_ACCOUNT = re.compile(r"\b\d{8,}\b")
_HANDLE = re.compile(r"(?<![\w@])@\w{2,}")


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


def mask_pii(text: str) -> str:
    """Mask emails, phone and account-like numbers and @handles in chat text."""
    text = _EMAIL.sub("<email>", text)
    text = _PHONE.sub("<phone>", text)
    text = _ACCOUNT.sub("<number>", text)
    return _HANDLE.sub("@<user>", text)
