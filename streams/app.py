"""Faust app factory: nothing is created until an entry point calls ``create_app``."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import faust
from mode.utils.locks import Event

from streams.agents import register_agents
from streams.control.drift_tracker import ReferenceLoader
from streams.knowledge import load_knowledge
from streams.metrics import PipelineMetrics, create_metrics
from streams.score.fetch_wait import shorten_fetch_wait
from streams.score.offsets import patch_new_offset
from streams.score.rates import RatesLoader
from streams.topics import declare
from streams.windows.absent import AbsentOffsets, read_committed, track_absent_offsets
from tonewatch.core.kafka_io import ssl_context
from tonewatch.core.settings import Settings
from tonewatch.core.topics import state_table


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials from the same settings the CLI's clients use (secrets unwrapped only here)."""
    protocol = settings.kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    ctx = ssl_context(settings.kafka)
    if protocol.startswith("SASL"):
        password = settings.kafka.sasl_password.get_secret_value() if settings.kafka.sasl_password else None
        return faust.SASLCredentials(username=settings.kafka.sasl_username, password=password,
                                     mechanism=settings.kafka.sasl_mechanism or "PLAIN", ssl_context=ctx)
    return faust.SSLCredentials(ctx)


GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect cyclic garbage every 50,000 allocations instead of 700, and never scan start-up objects.

    The worker allocates a few dozen short-lived objects per message and makes almost no cycles, so at
    the default threshold the collector ran every few messages and scanned the young heap each time (its
    cost: benchmarks/README.md). Cyclic garbage is still collected, only in larger and rarer steps.
    """
    gc.freeze()  # modules, settings, the app: survivors of every collection, moved out of its way
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 10)


class Shutdown:
    """Why the worker stops before anyone asked it to: the score stage could not start, or its loop ended.

    The stage calls it with one line saying why; :class:`Worker` then stops every service as after a signal,
    and ``tonewatch worker`` exits non-zero with that line. The first reason is kept: later ones follow from it.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.requested = Event()

    def __call__(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.requested.set()


class Worker(faust.Worker):
    """Faust's worker that also stops when ``shutdown`` is requested, not only on a signal or a crash."""

    def __init__(self, app: faust.App, shutdown: Shutdown, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.shutdown = shutdown

    async def on_started(self) -> None:
        # mode's worker waits here until it is stopped or crashed; returning lets execute_from_commandline
        # stop the services in order (the stage delivers what it has), then close the loop
        await self.wait_first(self.shutdown.requested)


def create_app(settings: Settings, metrics: PipelineMetrics | None = None,
               load_reference: ReferenceLoader | None = None, on_fatal: Callable[[str], None] | None = None,
               load_rates: RatesLoader | None = None) -> faust.App:
    """The worker's app; pass ``metrics`` to expose them (the CLI serves its registry), ``load_reference``
    to monitor drift (it reads a version's stored reference), ``load_rates`` to correct negative shares (a
    version's error rates per source), and ``on_fatal`` (a :class:`Shutdown`) to hear why the score stage
    gave up."""
    absent = AbsentOffsets([settings.kafka.topic("trend-events")])
    patch_new_offset(absent)  # Faust's commit could skip an in-flight record (streams/score/offsets.py)
    shorten_fetch_wait()  # Faust's 1.5 s broker long-poll stalled the windows agent (streams/score/fetch_wait.py)
    track_absent_offsets(absent)  # transaction markers: offsets the commit must not wait for
    if settings.kafka.processing_guarantee == "exactly_once":
        read_committed()  # an aborted batch of partials is never folded (streams/windows/absent.py)
    app = faust.App(
        settings.kafka.group_id,
        broker=f"kafka://{settings.kafka.bootstrap}",
        broker_credentials=broker_credentials(settings),
        store="memory://",  # tables are rebuilt from their changelog topics on restart
        topic_partitions=settings.kafka.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=settings.kafka.session_timeout_s,
        datadir=str(settings.run_dir / "faust" / settings.kafka.group_id),
        web_enabled=False,
    )
    topics = declare(app, settings)
    state = app.Table(
        state_table(settings), default=dict, partitions=settings.kafka.topic_partitions,
        value_type=bytes,  # raw: JSON written by streams.windows.fold.dump_state
    )
    knowledge = load_knowledge(settings.scoring.knowledge_path) if settings.scoring.knowledge_path else load_knowledge()
    register_agents(
        app, settings, topics, state, settings.detector, metrics or create_metrics(), knowledge, load_reference,
        on_fatal, load_rates, absent,
    )
    return app
