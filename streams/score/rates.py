"""Each sentiment version's error rates per source, for the corrected negative share (windows/prevalence.py).

Read once per version from its manifest by the loader the entry point passes in (the worker never imports
training code), synchronously on the first message the version scored: a manifest is a small file, and a
message must be adjusted with its own rates whenever it is scored, or a replay and a live run would differ.
A version whose rates cannot be read counts its labels, as before the correction, and says so once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from streams.records import Scored
from streams.windows.prevalence import Rates, adjusted

log = logging.getLogger(__name__)
RatesLoader = Callable[[Path], Mapping[str, Rates] | None]  # a version folder -> its rates per source, if any


class RatesBook:
    def __init__(self, repository: Path, model: str, load: RatesLoader | None) -> None:
        self._repository, self._model, self._load = repository, model, load
        self._by_version: dict[str, Mapping[str, Rates] | None] = {}

    def rates(self, version: str | None, source: str) -> Rates | None:
        """The version's rates for ``source`` (its rates over all sources when it has none for it)."""
        if self._load is None or version is None:
            return None
        if version not in self._by_version:
            self._by_version[version] = self._read(version)
        table = self._by_version[version]
        return None if table is None else table.get(source) or table.get("all")

    def adjusted(self, s: Scored) -> float:
        """The message's share of its window's corrected negative count."""
        rates = self.rates(s.model_versions.get(self._model), s.source)
        return adjusted(s.p_negative, s.sentiment == "negative", rates)

    def _read(self, version: str) -> Mapping[str, Rates] | None:
        assert self._load is not None
        if not version.isdigit():  # a version name from a record, never a path
            return None
        try:
            table = self._load(self._repository / self._model / version)
        except Exception as exc:  # an unreadable manifest must not stop scoring: its labels are counted
            log.warning("%s v%s: no error rates (%s): its windows count labels, uncorrected", self._model, version, exc)
            return None
        if table is None:
            log.warning("%s v%s has no error rates in its manifest: its windows count labels", self._model, version)
        return table
