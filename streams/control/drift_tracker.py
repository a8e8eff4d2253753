"""The worker's side of drift: one window per model version, references loaded off the event loop.

A version's reference is read from its manifest by the loader the entry point passes in (the worker
never imports training code); until it is ready the window still fills, so PSI is exported as soon
as both are there. A version without a reachable artifact or a stored reference has no drift.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from streams.control.drift import DriftEvent, DriftWindow
from streams.metrics import PipelineMetrics
from streams.records import Scored
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (model, version)
Reference = dict[str, list[float]]
ReferenceLoader = Callable[[Path], Reference | None]  # a version folder -> its stored reference, if any


class DriftTracker:
    def __init__(self, settings: Settings, metrics: PipelineMetrics, load_reference: ReferenceLoader | None = None
                 ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._load_reference = load_reference
        self._windows: dict[Key, DriftWindow] = {}
        self._refs: dict[Key, dict[str, list[float]]] = {}
        self._loading: dict[Key, asyncio.Future[None]] = {}
        # one loader thread: references load one at a time (concurrent first imports of transformers
        # race and fail) and never take more than one core from scoring
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-reference")

    def observe(self, batch: list[Scored]) -> list[DriftEvent]:
        """Add a batch of scored records to both models' windows; returns the drift events now due.

        PSI is computed once per batch and model version, not per record: the same events, at most a
        batch later, for a fraction of the cost.
        """
        s = self._settings
        touched: dict[Key, DriftWindow] = {}
        for scored in batch:
            for model, probs, label in ((s.triton.sentiment_model, scored.sentiment_probs, scored.sentiment),
                                        (s.triton.topic_model, scored.topic_probs, scored.topic)):
                version = scored.model_versions.get(model)
                if version is None or not probs:
                    continue
                key = (model, version)
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = DriftWindow(model, version, list(probs), s.retrain.drift_window,
                                                              s.retrain.drift_threshold)
                touched[key] = window
                window.add_top(label, probs[label])  # the record's label is its top class
        events: list[DriftEvent] = []
        for (model, version), window in touched.items():
            reference = self._reference((model, version))
            if reference is None:
                continue
            values = window.psi(reference)
            for kind, value in values.items():
                self._metrics.drift_psi.labels(model, kind).set(value)
            events += window.events(values)
        return events

    def _reference(self, key: Key) -> dict[str, list[float]] | None:
        if key in self._refs:
            return self._refs[key]
        if key not in self._loading:
            self._loading[key] = asyncio.get_running_loop().run_in_executor(self._executor, self._load, key)
        return None

    def _load(self, key: Key) -> None:
        """In a thread: a failure only disables drift for this version, the worker keeps scoring."""
        model, version = key
        if self._load_reference is None:
            return
        try:
            ref = self._load_reference(self._settings.triton.model_repository / model / version)
        except Exception as exc:  # e.g. the trivial bench models: no Tonewatch artifact
            log.warning("no drift reference for %s v%s: drift not monitored (%s)", model, version, exc)
            return
        if ref is None:
            log.warning("%s v%s has no drift reference in its manifest: drift not monitored", model, version)
            return
        self._refs[key] = ref
        log.info("drift reference for %s v%s ready: %s", model, version, ref)


def event_time() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
