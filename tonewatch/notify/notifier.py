"""The ``tonewatch notifier`` loop: alerts in, incidents out, one queue per subscription, ledger and dead letters.

Per-key alerts become incidents (tracker.py); each incident version is written to the incidents topic and
queued for every subscription that wants it. Offsets of the alerts topic are committed only up to the first
record whose incident version is not yet published and delivered (or dead-lettered), so a crash reads it again
and the ledger drops what was sent. Each subscription sends one request at a time (versions in order) in a
thread pool, so a slow or down receiver delays only its own queue.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from kafka.consumer import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import ValidationError

from streams.control.rejects import InvalidRecord, load_json, preview, validation_reason
from tonewatch.core.kafka_io import client_config, producer
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INCIDENTS
from tonewatch.notify import senders
from tonewatch.notify.ledger import ensure_delivery_topics, ledger_key
from tonewatch.notify.metrics import NotifierMetrics
from tonewatch.notify.policy import Outcome, backoff_s, due_escalation
from tonewatch.notify.reader import StateReader
from tonewatch.notify.state import AlertRef, State, delivery_entry
from tonewatch.notify.subscriptions import Subscription
from tonewatch.notify.tracker import Tracker

log = logging.getLogger("tonewatch.notifier")
# requests in flight at once; each has a total deadline (egress), so slow receivers hold a thread only that long
DELIVERY_THREADS = 8


def parse_alert(value: bytes | None) -> dict[str, Any]:
    """The alert in a record of the alerts topic. Not UTF-8, not JSON, nested too deeply, not an object, or a
    field of the wrong type: InvalidRecord, with a reason that does not quote the record."""
    doc = load_json(value)
    try:
        AlertRef.model_validate(doc)
    except ValidationError as exc:
        raise InvalidRecord(f"bad alert: {validation_reason(exc)}") from exc
    alert: dict[str, Any] = doc
    return alert


Origin = tuple[TopicPartition, int]


@dataclass
class Job:
    sub_id: str
    incident: dict[str, Any]
    kind: str  # initial | escalation-N
    origin: Origin | None
    first_at: float
    attempts: int = 0
    next_at: float = 0.0

    @property
    def key(self) -> str:
        return ledger_key(self.sub_id, self.incident["id"], f"v{self.incident['version']}", self.kind)


def load_sectors(settings: Settings) -> Mapping[str, str]:
    """Ticker -> sector, from the knowledge file the score stage uses: a ticker's alert and its sector's are
    related. Without it incidents still form, from shared messages alone."""
    from streams.knowledge import load_sectors as from_file

    return from_file(settings.scoring.knowledge_path)


class Notifier:
    def __init__(self, settings: Settings, metrics: NotifierMetrics, producer: Any = None,
                 tracker: Tracker | None = None) -> None:
        self.settings, self.metrics = settings, metrics
        d = settings.delivery
        self.tracker = tracker or Tracker(d.incident_gap_s, d.incident_settle_s, load_sectors(settings),
                                          settings.detector.top_messages)
        self.producer = producer  # run() makes one when none is given
        self.state = State()
        self.queues: dict[str, deque[Job]] = {}
        self.queued: set[str] = set()
        self.inflight: dict[str, tuple[Job, Future[tuple[Outcome, str, float]]]] = {}
        self.pending: dict[Origin, int] = {}
        self.holds: dict[str, list[Origin]] = {}  # alert id -> its records waiting for an incident version
        self.seen: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.rng = random.Random()

    # --- reading -------------------------------------------------------------------------------
    def on_alert(self, tp: TopicPartition, offset: int, value: bytes | None, now: float) -> None:
        """Give an alerts-topic record to the tracker and hold its offset until its incident version is out. One
        that is not an alert is skipped, logged and counted: raising would stop the notifier on it again after
        every restart."""
        self.seen[tp] = max(self.seen.get(tp, -1), offset)
        try:
            alert = parse_alert(value)
        except InvalidRecord as exc:
            self.metrics.skipped_alerts.inc()
            log.warning("alerts %s@%d skipped: %s [%s]", tp, offset, exc.reason, preview(value))
            return
        current = self.tracker.add(alert, now)
        if current is not None:  # a copy of what is published: the ledger drops what was delivered
            self._offer(current, (tp, offset), now)
            return
        self.holds.setdefault(alert["id"], []).append((tp, offset))
        self.pending[(tp, offset)] = self.pending.get((tp, offset), 0) + 1

    def settle(self, now: float) -> None:
        """Publish the incident versions that are due, queue them, and let go of the records they answer."""
        for record, answers in self.tracker.due(now):
            self.producer.send(self.settings.kafka.topic(INCIDENTS), key=record["id"].encode(),
                               value=json.dumps(record).encode())
            self.metrics.incidents.labels(record["status"]).inc()
            log.info("incident %s v%d %s %s %s (%d alerts)", record["id"], record["version"], record["status"],
                     record["severity"], preview(record["headline"], 80), len(record["children"]))
            origins = [o for aid in answers for o in self.holds.pop(aid, [])]
            self._offer(record, origins[0] if origins else None, now)
            for origin in origins:
                self._release(origin)

    def _offer(self, incident: dict[str, Any], origin: Origin | None, now: float) -> None:
        for sub in list(self.state.subs.values()):
            if sub.wants(incident):
                self._enqueue(Job(sub.id, incident, "initial", origin, now), sub)

    def _enqueue(self, job: Job, sub: Subscription) -> None:
        if job.key in self.state.ledger or job.key in self.queued:
            self.metrics.deliveries.labels(sub.kind, "duplicate").inc()
            return
        self.queued.add(job.key)
        self.queues.setdefault(job.sub_id, deque()).append(job)
        if job.origin is not None:
            self.pending[job.origin] = self.pending.get(job.origin, 0) + 1

    def _release(self, origin: Origin) -> None:
        self.pending[origin] -= 1
        if not self.pending[origin]:
            del self.pending[origin]

    # --- escalation ----------------------------------------------------------------------------
    def escalate(self, now: float) -> None:
        """Re-send the latest version of an open, unacknowledged critical incident (acking the incident or any
        of its alerts stops it)."""
        d = self.settings.delivery
        for (sid, iid), n in list(self.state.notified.items()):
            incident, sub = self.tracker.record(iid), self.state.subs.get(sid)
            if incident is None or sub is None:  # an alert of an older ledger, or long forgotten
                del self.state.notified[(sid, iid)]
                continue
            acked = iid in self.state.acks or any(c["id"] in self.state.acks for c in incident["children"])
            status = "resolved" if incident["status"] == "resolved" else "firing"
            # nothing more will ever be due for this pair; Grafana annotations record events, they don't page
            if status == "resolved" or acked or n.sent >= d.escalation_max or sub.kind == "grafana":
                del self.state.notified[(sid, iid)]
                continue
            due = due_escalation(severity=incident["severity"], status=status, acked=acked, notified_at=n.at,
                                 sent=n.sent, now=now, interval_s=d.escalation_interval_s,
                                 max_escalations=d.escalation_max)
            if due is not None:
                job = Job(sid, {**incident, "escalation": due}, f"escalation-{due}", None, now)
                if job.key not in self.queued and job.key not in self.state.ledger:
                    self.metrics.escalations.inc()
                    self._enqueue(job, sub)

    # --- sending -------------------------------------------------------------------------------
    def _send(self, sub: Subscription, incident: dict[str, Any]) -> tuple[Outcome, str, float]:
        """Runs in the pool; any surprise becomes a retry, never a dead notifier."""
        t0 = time.monotonic()
        try:
            outcome, detail = senders.deliver(self.settings, sub, incident)
        except Exception as exc:
            log.exception("delivery to %s raised", sub.id)
            outcome, detail = "retry", f"{type(exc).__name__}: {exc}"
        return outcome, detail, time.monotonic() - t0

    def dispatch(self, pool: ThreadPoolExecutor, now: float) -> None:
        for sid, queue in self.queues.items():
            if sid in self.inflight or not queue or queue[0].next_at > now:
                continue
            job, sub = queue[0], self.state.subs.get(sid)
            if sub is None:
                self._finish(job, "dead_letter", "subscription removed before delivery", "unknown")
                continue
            job.attempts += 1
            self.inflight[sid] = (job, pool.submit(self._send, sub, job.incident))

    def collect(self, now: float) -> None:
        for sid, (job, fut) in list(self.inflight.items()):
            if not fut.done():
                continue
            del self.inflight[sid]
            sub = self.state.subs.get(sid)
            kind = sub.kind if sub else "unknown"
            outcome, detail, took = fut.result()
            self.metrics.seconds.labels(kind).observe(took)
            if outcome == "delivered":
                entry = delivery_entry(job.key, sid, kind, job.incident, job.kind, time.time(), job.attempts)
                self.producer.send(self.settings.kafka.topic("deliveries"), key=job.key.encode(),
                                   value=json.dumps(entry).encode())
                self.state.note_delivery(entry)
                self._finish(job, "delivered", detail, kind)
            elif outcome == "retry" and now - job.first_at < self.settings.delivery.give_up_s:
                job.next_at = now + backoff_s(job.attempts, self.settings.delivery.backoff_base_s,
                                              self.settings.delivery.backoff_cap_s, self.rng.random())
                self.metrics.deliveries.labels(kind, "retry").inc()
                log.info("delivery %s failed (%s); retry %d in %.1fs", job.key, detail, job.attempts,
                         job.next_at - now)
            else:
                reason = detail if outcome == "permanent" else f"gave up after {now - job.first_at:.0f}s: {detail}"
                self._finish(job, "dead_letter", reason, kind)

    def _finish(self, job: Job, outcome: str, detail: str, kind: str) -> None:
        if outcome == "dead_letter":
            inc = job.incident
            doc = {"reason": detail, "subscription": job.sub_id, "incident_id": inc["id"], "version": inc["version"],
                   "status": inc["status"], "kind": job.kind, "attempts": job.attempts, "incident": inc,
                   "at": time.time()}
            self.producer.send(self.settings.kafka.topic("delivery-dead-letter"), key=inc["id"].encode(),
                               value=json.dumps(doc).encode())
            log.warning("delivery %s dead-lettered: %s", job.key, detail)
        self.metrics.deliveries.labels(kind, outcome).inc()
        self.queues[job.sub_id].popleft()
        self.queued.discard(job.key)
        if job.origin is not None:
            self._release(job.origin)

    def commit(self, consumer: KafkaConsumer) -> None:
        """Per partition: up to the first record with unfinished deliveries, else past the last seen."""
        self.producer.flush()  # ledger entries and dead letters are durable before the offsets move
        offsets = {}
        for tp, last in self.seen.items():
            waiting = [off for (p, off) in self.pending if p == tp]
            nxt = min(waiting) if waiting else last + 1
            if self.committed.get(tp) != nxt:
                offsets[tp] = OffsetAndMetadata(nxt, "", -1)
        if offsets:
            try:
                consumer.commit(offsets)
            except KafkaError as exc:  # a rebalance in progress: the next loop commits again
                log.warning("offset commit failed (%s); retrying", exc)
                return
            self.committed.update({tp: o.offset for tp, o in offsets.items()})

    # --- the loop ------------------------------------------------------------------------------
    def run(self, stop: Callable[[], bool]) -> None:
        ensure_delivery_topics(self.settings)
        self.producer = self.producer or producer(self.settings.kafka)
        reader = StateReader(self.settings, self.state)
        reader.catch_up()
        self.tracker.restore(self.state.incidents.values())
        self.state.incidents.clear()
        log.info("notifier ready: %d subscriptions, %d ledger entries, %d acks, %d incidents",
                 len(self.state.subs), len(self.state.ledger), len(self.state.acks), len(self.tracker.incidents))
        alerts = KafkaConsumer(self.settings.kafka.topic("alerts"), **client_config(self.settings.kafka),
                               enable_auto_commit=False,
                               group_id=f"{self.settings.kafka.app_id}-notifier-{self.settings.kafka.topic_prefix}",
                               auto_offset_reset="earliest", fetch_max_wait_ms=100)
        pool = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="deliver")
        try:
            while not stop():
                reader.poll()
                now = time.time()
                busy = self.inflight or any(q and q[0].next_at <= now for q in self.queues.values())
                for tp, records in alerts.poll(timeout_ms=0 if busy else 200).items():
                    for r in records:
                        self.on_alert(tp, r.offset, r.value, now)
                self.settle(time.time())
                self.escalate(now)
                self.dispatch(pool, now)
                if self.inflight:  # wake up as soon as a request finishes, not on the next poll
                    wait([f for _, f in self.inflight.values()], timeout=0.2, return_when=FIRST_COMPLETED)
                self.collect(time.time())
                self.commit(alerts)
            while self.inflight:  # let started requests finish and record them
                time.sleep(0.1)
                self.collect(time.time())
            self.commit(alerts)
        finally:
            pool.shutdown(wait=True)
            alerts.close()
            reader.close()
            self.producer.close()
