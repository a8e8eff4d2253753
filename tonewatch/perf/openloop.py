"""Open-loop load for ``tonewatch bench``: messages on a fixed schedule, latency from each one's intended send time.

A closed-loop bench (send, wait, send) slows down with the pipeline and so never sees the queue a stall builds
(coordinated omission). Here every message's intended send time is fixed before its step starts; a producer or
broker that falls behind sends late, and the lateness counts as latency. Steps run at fractions of a ceiling
(the pipeline-only drain rate of the same run), one after another, each once the worker has caught up.

Two latencies per message, from its intended send time:

- **scored**: the scored record's timestamp (set by the worker's producer when it wrote the record);
- **trend**: the windows agent's first state-table changelog write that folds the trend-events partial holding
  the message, the latest over the message's keys (ticker, sector, topic, source): from then on every window
  that counts the message holds it. Found by the partial's (partition, offset) and the state's ``applied`` mark.
  The trends *record* of a window is written only when the window closes (``window_s`` + lateness later) and is
  not a per-message figure; surge_latency.py measures that path.
"""

from __future__ import annotations

import json
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydantic_core

from tonewatch.core.kafka_io import ensure_topics, iter_topic, producer
from tonewatch.core.settings import Settings
from tonewatch.core.topics import NAMES
from tonewatch.perf.workload import bench_messages
from tonewatch.replay import wait_for_pipeline

STEP_FRACTIONS = (0.10, 0.25, 0.50, 0.75, 0.90)
QUANTILES = (("p50_ms", 50.0), ("p99_ms", 99.0), ("p99_9_ms", 99.9))
SCORED_P99_TARGET_MS = 250.0  # issue 32, trivial models at 50 % of the ceiling
SLEEP_CAP_S = 0.05  # the sender wakes at least this often, so a stop request is heard promptly
TREND_DEFINITION = ("intended send time -> the windows agent's first trend-state changelog write whose applied "
                    "offset covers the trend-events partial holding the message, latest over its keys")


@dataclass(frozen=True)
class Outgoing:
    """One message of a schedule: its id, when it is meant to leave, and its encoded key and value."""

    id: str
    intended: float
    key: bytes
    value: bytes


def schedule(rate: float, duration_s: float, start: float) -> list[float]:
    """Intended send times of ``rate`` msg/s for ``duration_s`` from ``start``, evenly spaced (at least one)."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be above 0, got {rate} msg/s for {duration_s} s")
    return [start + i / rate for i in range(max(int(rate * duration_s), 1))]


def plan_steps(ceiling: float, fractions: Sequence[float] = STEP_FRACTIONS) -> list[float]:
    """The offered rate of each step, msg/s: ``fractions`` of ``ceiling``."""
    if ceiling <= 0:
        raise ValueError(f"the ceiling must be above 0 msg/s, got {ceiling}")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {list(fractions)}")
    return [round(ceiling * f, 1) for f in fractions]


def percentiles(values_ms: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    """p50, p99 and p99.9 (linear interpolation, numpy's default), rounded to 0.1 ms; None when empty."""
    if not values_ms:
        return {f"{prefix}{name}": None for name, _ in QUANTILES}
    arr = np.asarray(values_ms, dtype=float)
    return {f"{prefix}{name}": round(float(np.percentile(arr, q)), 1) for name, q in QUANTILES}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def encode(msg_id: str, intended: float, text: str, source: str = "news") -> Outgoing:
    """A message whose event time is its intended send time, as a live feed's would be."""
    doc = {"id": msg_id, "source": source, "text": text, "ts": iso(intended)}
    return Outgoing(msg_id, intended, msg_id.encode(), json.dumps(doc).encode())


def step_messages(times: Sequence[float], run: str, texts: Sequence[str]) -> list[Outgoing]:
    """The step's messages, encoded before it starts so the send loop does little more than send."""
    return [encode(f"ol-{run}-{i}", t, texts[i % len(texts)]) for i, t in enumerate(times)]


def send_on_schedule(prod: Any, topic: str, msgs: Sequence[Outgoing], *, clock: Callable[[], float] = time.time,
                     sleep: Callable[[float], None] = time.sleep, stop: Callable[[], bool] | None = None
                     ) -> list[float]:
    """Send each message once its intended time has come, whatever the pipeline does; returns each sent one's
    lateness in seconds (when the loop got to it, less its intended time). ``stop`` ends the schedule early."""
    late: list[float] = []
    i = 0
    while i < len(msgs) and not (stop is not None and stop()):
        now = clock()
        while i < len(msgs) and msgs[i].intended <= now:
            prod.send(topic, key=msgs[i].key, value=msgs[i].value)
            late.append(now - msgs[i].intended)
            i += 1
        if i < len(msgs):
            wait = msgs[i].intended - clock()
            if wait > 0:
                sleep(min(wait, SLEEP_CAP_S))
    prod.flush()
    return late


def fold_index(changelog: Iterable[tuple[int, str, tuple[int, int] | None, float]]
               ) -> dict[tuple[int, str], tuple[list[int], list[float]]]:
    """Per (trend-events partition, state key): the applied offsets and times of its state writes, in order.

    ``changelog`` holds (changelog partition, key, the state's ``applied`` (partition, offset), record time);
    the table is co-partitioned with trend-events, so a write's applied partition is its own partition.
    """
    index: dict[tuple[int, str], tuple[list[int], list[float]]] = {}
    for partition, key, applied, ts in changelog:
        if applied is None or applied[0] != partition:
            continue
        offsets, times = index.setdefault((partition, key), ([], []))
        if offsets and applied[1] < offsets[-1]:
            continue  # a restart re-wrote an older state: the first write covering an offset is what counts
        offsets.append(applied[1])
        times.append(ts)
    return index


def trend_times(partials: Iterable[tuple[int, int, str, Sequence[str]]],
                index: dict[tuple[int, str], tuple[list[int], list[float]]]) -> dict[str, float]:
    """Per message id, when the last of its keys' states folding it was written. ``partials`` holds
    (trend-events partition, offset, state key, message ids). A message with a key never folded is left out."""
    out: dict[str, float] = {}
    unfolded: set[str] = set()
    for partition, offset, key, ids in partials:
        offsets, times = index.get((partition, key), ([], []))
        at = bisect_left(offsets, offset)
        if at == len(offsets):
            unfolded.update(ids)
            continue
        for mid in ids:
            out[mid] = max(out.get(mid, times[at]), times[at])
    return {mid: t for mid, t in out.items() if mid not in unfolded}


def step_result(rate: float, fraction: float, msgs: Sequence[Outgoing], late: Sequence[float],
                scored: dict[str, float], trends: dict[str, float]) -> dict[str, Any]:
    """One step's figures; latencies in ms from each message's intended send time."""
    planned = {m.id: m.intended for m in msgs}
    sent = [m.intended + x for m, x in zip(msgs, late, strict=False)]  # as sent, behind schedule or not
    span = sent[-1] - sent[0] if len(sent) > 1 else 0.0
    to_scored = [(scored[i] - t) * 1000 for i, t in planned.items() if i in scored]
    to_trend = [(trends[i] - t) * 1000 for i, t in planned.items() if i in trends]
    return {
        "fraction": fraction, "offered_msgs_per_s": rate, "messages": len(msgs),
        "sent_msgs_per_s": round((len(sent) - 1) / span, 1) if span > 0 else None,
        "producer_late_p99_ms": percentiles([x * 1000 for x in late])["p99_ms"],
        "scored": len(to_scored), **percentiles(to_scored, "scored_"),
        "trend": len(to_trend), **percentiles(to_trend, "trend_"),
    }


def target_check(steps: Sequence[dict[str, Any]], fraction: float = 0.5) -> dict[str, Any]:
    """The issue's target: produce->scored p99 at half the ceiling; ``met`` None when no step ran there."""
    at = next((s for s in steps if abs(s["fraction"] - fraction) < 1e-9), None)
    p99 = None if at is None else at["scored_p99_ms"]
    return {"fraction": fraction, "scored_p99_ms": p99, "target_ms": SCORED_P99_TARGET_MS,
            "met": None if p99 is None else p99 <= SCORED_P99_TARGET_MS}


def plot_curve(steps: Sequence[dict[str, Any]], path: Path, title: str = "open-loop latency, trivial models") -> Path:
    """Latency against offered load: p50/p99/p99.9 of produce->scored (solid) and ->trend update (dashed), with
    the target line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5))
    ax = fig.add_subplot()
    x = [s["offered_msgs_per_s"] for s in steps]
    for stage, style in (("scored", "-"), ("trend", "--")):
        for name, marker, colour in (("p50_ms", "o", "#1f4e79"), ("p99_ms", "s", "#e67e22"),
                                     ("p99_9_ms", "^", "#c0392b")):
            y = [np.nan if s[f"{stage}_{name}"] is None else s[f"{stage}_{name}"] for s in steps]
            ax.plot(x, y, style, marker=marker, color=colour, label=f"{stage} {name[:-3].replace('_', '.')}")
    ax.axhline(SCORED_P99_TARGET_MS, color="#7f8c8d", linewidth=0.8, linestyle=":",
               label=f"target: scored p99 at 50% ({SCORED_P99_TARGET_MS:g} ms)")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (msg/s)")
    ax.set_ylabel("latency from intended send (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: no curve hidden under it
    fig.subplots_adjust(left=0.09, right=0.68, bottom=0.12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


# --- against a running worker ----------------------------------------------------------------------------------


def read_scored(settings: Settings, ids: set[str]) -> dict[str, float]:
    """Each of ``ids``' first scored record's timestamp, in seconds."""
    out: dict[str, float] = {}
    for r in iter_topic(settings.kafka, settings.kafka.topic("scored")):
        mid = pydantic_core.from_json(r.value)["id"]
        if mid in ids and mid not in out:
            out[mid] = r.timestamp / 1000
    return out


def _unwrapped(raw: bytes) -> Any:
    """A changelog key or value: raw, or wrapped once more as a JSON string by the table's codec."""
    try:
        value = pydantic_core.from_json(raw)
    except ValueError:
        return raw.decode()
    return pydantic_core.from_json(value) if isinstance(value, str) and value.startswith(("{", "[")) else value


def read_trends(settings: Settings) -> dict[str, float]:
    """Per message id on the trend-events topic, when the state writes folding it were done (``trend_times``)."""
    from streams.windows.fold import decode_record, state_key
    from tonewatch.core.topics import state_changelog

    partials = []
    for r in iter_topic(settings.kafka, settings.kafka.topic("trend-events")):
        for p in decode_record(r.value).partials:
            partials.append((r.partition, r.offset, state_key(p), p.message_ids))
    writes = []
    for r in iter_topic(settings.kafka, state_changelog(settings)):
        if r.value is None:  # an evicted key's tombstone
            continue
        applied = _unwrapped(r.value).get("applied")
        writes.append((r.partition, str(_unwrapped(r.key)), tuple(applied) if applied else None, r.timestamp / 1000))
    return trend_times(partials, fold_index(writes))


def wait_caught_up(settings: Settings, timeout_s: float) -> None:
    """Until the worker has processed every input and trend event now on the topics."""
    from kafka.errors import CoordinatorNotAvailableError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left = wait_for_pipeline(settings, max(deadline - time.monotonic(), 0.0), interval_s=0.5)
            break
        except CoordinatorNotAvailableError:  # a fresh broker has none until its first group has joined
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
    if any(left.values()):
        raise TimeoutError(f"the worker had not caught up after {timeout_s:.0f}s: {left}")


def run_open_loop(settings: Settings, ceiling: float, start_worker: Callable[[Settings], object], *,
                  fractions: Sequence[float] = STEP_FRACTIONS, step_s: float = 12.0, plot_path: Path | None = None,
                  timeout_s: float = 300.0) -> dict[str, Any]:
    """Start a worker on ``settings``' fresh topics, warm it up, then one open-loop step per fraction of
    ``ceiling``; each step starts once the worker has caught up with the one before."""
    ensure_topics(settings.kafka, [settings.kafka.topic(t) for t in NAMES])
    texts = sorted({m["text"] for m in bench_messages(500)})
    topic, run = settings.kafka.topic("news"), new_run_id()
    prod = producer(settings.kafka)
    start_worker(settings)
    try:
        send_on_schedule(prod, topic, step_messages([time.time()], f"{run}-warmup", texts))
        wait_caught_up(settings, timeout_s)  # worker start-up and the first Triton call are not a step's latency
        sent: list[tuple[float, float, list[Outgoing], list[float]]] = []
        for i, (rate, fraction) in enumerate(zip(plan_steps(ceiling, fractions), fractions, strict=True)):
            msgs = step_messages(schedule(rate, step_s, time.time() + 0.5), f"{run}-{i}", texts)
            sent.append((rate, fraction, msgs, send_on_schedule(prod, topic, msgs)))
            wait_caught_up(settings, timeout_s)
    finally:
        prod.close()
    scored = read_scored(settings, {m.id for _, _, msgs, _ in sent for m in msgs})
    trends = read_trends(settings)
    steps = [step_result(rate, fraction, msgs, late, scored, trends) for rate, fraction, msgs, late in sent]
    result: dict[str, Any] = {"ceiling_msgs_per_s": ceiling, "step_s": step_s, "steps": steps,
                              "target": target_check(steps), "trend_definition": TREND_DEFINITION}
    if plot_path is not None:
        result["plot"] = str(plot_curve(steps, plot_path))
    return result
