"""Company names to tickers and tickers to sectors, from a small committed, extensible CSV."""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

_NAME_CHAR = re.compile(r"[\w&]")  # a name must not touch one of these on either side
log = logging.getLogger(__name__)
DEFAULT_MAP = Path(__file__).resolve().parent.parent / "data" / "knowledge" / "companies.csv"


@dataclass(frozen=True)
class Knowledge:
    sectors: dict[str, str]
    alias_pattern: re.Pattern[str] | None
    alias_to_ticker: dict[str, str]

    def tickers_in(self, text: str) -> list[str]:
        """Tickers of companies named in the text, in order of mention.

        The pattern starts with the names themselves, so the regex engine skips to positions where a
        name can begin; the check that no word character precedes it is done here, not by a lookbehind.
        """
        if self.alias_pattern is None:
            return []
        found, pos = [], 0
        while (m := self.alias_pattern.search(text, pos)) is not None:
            start = m.start()
            if start and _NAME_CHAR.match(text, start - 1):  # inside a longer word: look again one further
                pos = start + 1
                continue
            found.append(self.alias_to_ticker[m.group(0)])
            pos = m.end()
        return found

    def sector(self, ticker: str) -> str | None:
        return self.sectors.get(ticker)


def load_knowledge(path: Path = DEFAULT_MAP) -> Knowledge:
    """One regex for all aliases, longest first, so 'Goldman Sachs' wins over 'Goldman'."""
    sectors: dict[str, str] = {}
    aliases: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            ticker = row["ticker"].strip().upper()
            sectors[ticker] = row["sector"].strip()
            for alias in filter(None, (a.strip() for a in row["aliases"].split("|"))):
                aliases[alias] = ticker
    names = sorted(aliases, key=len, reverse=True)
    pattern = re.compile(r"(?:" + "|".join(map(re.escape, names)) + r")(?![\w&])") if names else None
    return Knowledge(sectors, pattern, aliases)


def load_sectors(path: Path | None) -> dict[str, str]:
    """Ticker -> sector from the knowledge file (``None``: the committed one), for the services that relate a
    ticker to its sector (incidents, the store's sector links); an unreadable file gives none, with a warning."""
    try:
        return load_knowledge(path or DEFAULT_MAP).sectors
    except (OSError, KeyError, ValueError) as exc:
        log.warning("no ticker sectors from %s (%s: %s)", path or DEFAULT_MAP, type(exc).__name__, exc)
        return {}
