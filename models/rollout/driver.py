"""Rollout, promote and roll back: Triton loads, model events and gates in the one safe order.

Loaded and smoke-tested before any event routes traffic to a version; unloaded ``rollout_settle_s`` after
the event that routes traffic away from it (docs/decisions/2026-12-07-rollout-order.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.artifact import ArtifactError, experiment_reason, validate_artifact, version_numbers
from models.publish import SMOKE_TEXTS, check_probs, config_labels
from models.rollout import events
from models.rollout.gates import LiveStats, Verdict, decide, golden_gate
from models.triton_admin import load_model, loaded_versions, record_production, startup_versions
from streams.control.routing import Route, fold
from tonewatch.core.errors import ServiceError
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)


class RolloutError(ServiceError):
    """A rollout that cannot start (nothing serving, another rollout running, unknown version)."""


@dataclass
class Outcome:
    model: str
    version: int
    production: int
    action: Literal["promoted", "rolled_back"]
    reasons: list[str]
    golden: dict[str, float] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)


def servable(settings: Settings, name: str, version: int) -> None:
    """A valid artifact whose training data may be served: ``../shared`` sets' licences forbid production."""
    try:
        manifest = validate_artifact(settings.triton.model_repository / name / str(version))
    except ArtifactError as exc:  # missing, tampered (a path outside it, a symlink) or incomplete
        raise RolloutError(f"{name} v{version} cannot be served: {exc}") from exc
    if manifest.shared_data:
        why = experiment_reason(manifest.shared_data)
        raise RolloutError(f"{name} v{version} was {why}: an experiment, never served")


def serving_version(settings: Settings, name: str, route: Route) -> int:
    """Production per the events; before the first event, the newest version Triton has ready."""
    if route.production is not None:
        return route.production
    ready = [int(v) for v, state in loaded_versions(settings, name).items() if state == "READY"]
    if not ready:
        raise RolloutError(f"no version of '{name}' is loaded in Triton at {settings.triton.http_url}")
    return max(ready)


def served_smoke(settings: Settings, name: str, version: int) -> None:
    from models.evaluate import triton_predictor

    probs = triton_predictor(settings.triton.grpc_url, name, str(version))(SMOKE_TEXTS)
    check_probs(probs, len(SMOKE_TEXTS), len(config_labels(settings, name)), f"{name} v{version} through Triton")


def golden_accuracy(settings: Settings, name: str, versions: list[int]) -> dict[int, float]:
    """Accuracy of each version on the first test-split texts, served by Triton (same texts for all)."""
    from models.data import load_dataset
    from models.evaluate import triton_predictor

    test = load_dataset(name).test
    texts, labels = test.texts[: settings.rollout.golden_size], np.array(test.labels[: settings.rollout.golden_size])
    out = {}
    for v in versions:
        probs = triton_predictor(settings.triton.grpc_url, name, str(v))(texts)
        out[v] = float((probs.argmax(axis=1) == labels).mean())
    return out


def label_field(settings: Settings, name: str) -> str:
    """The scored record's label field of a model (``sentiment`` or ``topic``)."""
    return "sentiment" if name == settings.triton.sentiment_model else "topic"


def watch(settings: Settings, name: str, production: int, candidate: int, mode: Literal["canary", "shadow"],
          duration_s: float, echo: Callable[[str], None]) -> tuple[Verdict, LiveStats]:
    """Follow the scored topic from now; stop early on a failed gate, else decide at the end."""
    from kafka import KafkaConsumer, TopicPartition

    from tonewatch.core.kafka_io import READER, client_config

    th, stats, start = settings.rollout, LiveStats(), time.time()
    topic, lf = settings.kafka.topic("scored"), label_field(settings, name)
    consumer = KafkaConsumer(**client_config(settings.kafka), **READER, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        offsets = consumer.offsets_for_times({tp: int(start * 1000) for tp in tps})
        ends = consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, offsets[tp].offset if offsets.get(tp) else ends[tp])
        verdict, last_report = Verdict("wait", ("no traffic yet",)), start
        # judge for at least duration_s, and longer (up to rollout_max_wait_s) while traffic is too thin
        while time.time() - start < duration_s or (
            verdict.action == "wait" and time.time() - start < max(duration_s, settings.rollout.max_wait_s)
        ):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    stats.add(json.loads(r.value), name, lf, production, candidate)
            verdict = decide(stats, mode, th)
            if verdict.action == "rollback":
                return verdict, stats
            if time.time() - last_report > 5:
                echo(f"  {mode}: {stats.candidate_n} candidate, {sum(stats.production.values())} production, "
                     f"{stats.errors} errors; {'; '.join(verdict.reasons)}")
                last_report = time.time()
        return decide(stats, mode, th), stats
    finally:
        consumer.close()


def _swap_to(settings: Settings, name: str, keep: int, drop: int) -> None:
    """After the routing event: let workers follow it, then leave only ``keep`` loaded."""
    time.sleep(settings.rollout.settle_s)
    load_model(settings, name, versions=[keep])
    events.publish(settings, name, drop, "unloaded", reason=f"retired; v{keep} serves")


def rollout(
    settings: Settings, name: str, version: int, *, mode: Literal["canary", "shadow"] = "canary",
    share: float | None = None, duration_s: float | None = None, echo: Callable[[str], None] = print,
) -> Outcome:
    """Load beside production, smoke and golden-test through Triton, canary or shadow, then decide."""
    route = events.current_routes(settings).get(name, Route())
    if route.candidate is not None:
        raise RolloutError(f"{name} v{route.candidate} is already in {route.mode}; promote or roll it back first")
    if version not in version_numbers(settings.triton.model_repository, name):
        raise RolloutError(f"{name} v{version} is not in {settings.triton.model_repository}; push it first")
    servable(settings, name, version)
    production = serving_version(settings, name, route)
    if version == production:
        raise RolloutError(f"{name} v{version} is already production")
    if route.production is None:  # pin what serves now before a second version exists beside it
        events.publish(settings, name, production, "promoted", reason="serving when the first rollout began")
        record_production(settings, name, production)
        time.sleep(settings.rollout.settle_s)
    echo(f"loading {name} v{version} beside production v{production}")
    load_model(settings, name, versions=[production, version])
    events.publish(settings, name, version, "loaded", reason=f"beside production v{production}")
    outcome = Outcome(name, version, production, "rolled_back", [])
    try:
        served_smoke(settings, name, version)
        acc = golden_accuracy(settings, name, [production, version])
        outcome.golden = {f"v{v}": round(a, 4) for v, a in acc.items()}
        verdict = golden_gate(acc[production], acc[version], settings.rollout)
    except ArtifactError as exc:
        verdict = Verdict("rollback", (str(exc),))
    echo(f"served checks: {verdict.action}: {'; '.join(verdict.reasons)}")
    if verdict.action == "promote":
        share = share if share is not None else settings.rollout.canary_share
        events.publish(settings, name, version, mode, share=share if mode == "canary" else None,
                       reason="; ".join(verdict.reasons))
        echo(f"{mode} of {name} v{version}" + (f" on {share:.0%} of message ids" if mode == "canary" else ""))
        verdict, stats = watch(settings, name, production, version, mode,
                               duration_s or settings.rollout.duration_s, echo)
        outcome.live = {"candidate": dict(stats.candidate), "production": dict(stats.production),
                        "errors": stats.errors, "agreements": stats.agreements, "compared": stats.compared}
    outcome.reasons = list(verdict.reasons)
    if verdict.action == "promote":
        events.publish(settings, name, version, "promoted", reason="; ".join(verdict.reasons))
        record_production(settings, name, version)
        _swap_to(settings, name, keep=version, drop=production)
        outcome.action = "promoted"
    else:
        events.publish(settings, name, version, "rolled_back", reason="; ".join(verdict.reasons))
        _swap_to(settings, name, keep=production, drop=version)
    return outcome


def promote(settings: Settings, name: str, version: int | None = None, reason: str = "manual") -> int:
    route = events.current_routes(settings).get(name, Route())
    production = serving_version(settings, name, route)
    target = version if version is not None else route.candidate
    if target is None:
        raise RolloutError(f"{name} has no candidate; name the version to promote")
    if target == production:
        raise RolloutError(f"{name} v{target} is already production")
    servable(settings, name, target)
    load_model(settings, name, versions=[production, target])  # no-op when it is already beside production
    served_smoke(settings, name, target)
    events.publish(settings, name, target, "promoted", reason=reason)
    record_production(settings, name, target)
    _swap_to(settings, name, keep=target, drop=production)
    return target


def rollback(settings: Settings, name: str, to: int | None = None, reason: str = "manual") -> int:
    """Drop the candidate if there is one (and no ``to``); else make ``to`` (or the previous production) serve."""
    history = events.history(settings, name)
    route = fold(history).get(name, Route())
    production = serving_version(settings, name, route)
    if route.candidate is not None and to is None:
        events.publish(settings, name, route.candidate, "rolled_back", reason=reason)
        _swap_to(settings, name, keep=production, drop=route.candidate)
        return production
    if route.candidate is not None:
        raise RolloutError(f"{name} v{route.candidate} is in {route.mode}; roll it back first (no --to)")
    target = to if to is not None else events.previous_production(history)
    if target is None or target == production:
        raise RolloutError(f"{name}: nothing to roll back to (production v{production}); use --to N")
    servable(settings, name, target)
    load_model(settings, name, versions=[production, target])
    served_smoke(settings, name, target)
    events.publish(settings, name, production, "rolled_back", to=target, reason=reason)
    record_production(settings, name, target)
    _swap_to(settings, name, keep=target, drop=production)
    return target


def versions_to_sync(route: Route, startup: list[int], check: Callable[[int], None]) -> list[int]:
    """What sync loads: the events' production and candidate, or before any event ``startup``. ``check`` raises
    :class:`RolloutError` for a version that may not be served (a broken or tampered artifact, an experiment): a
    production version that fails it stops the sync, a candidate that fails is left out."""
    if route.production is None:
        for version in startup:
            check(version)
        return startup
    check(route.production)
    if route.candidate is None:
        return [route.production]
    try:
        check(route.candidate)
    except RolloutError as exc:
        log.warning("candidate left out: %s", exc)
        return [route.production]
    return [route.production, route.candidate]


def sync(settings: Settings, name: str) -> list[int]:
    """Make Triton load what the model events say (after a Triton restart loaded the committed policy), each
    version checked servable first.

    Before any event, what a stack start loads: the newest version that is not an experiment on
    ``../shared`` data (Triton's own policy would load the newest, whatever it was trained on).
    """
    route = fold(events.history(settings, name)).get(name, Route())
    startup = startup_versions(settings, name) if route.production is None else []
    if route.production is None and not startup:
        raise RolloutError(f"no servable version of '{name}' in {settings.triton.model_repository}")
    versions = versions_to_sync(route, startup, lambda v: servable(settings, name, v))
    load_model(settings, name, versions=versions)
    if route.production is not None:
        record_production(settings, name, route.production)
    return versions


def status(settings: Settings, name: str) -> dict[str, Any]:
    """Disk, Triton and routing views of one model side by side (they differ mid-rollout)."""
    history = events.history(settings, name)
    route = fold(history).get(name, Route())
    try:
        loaded: dict[str, str] | str = loaded_versions(settings, name)
    except Exception as exc:  # Triton down: still show disk and routing
        loaded = f"Triton unreachable: {exc}"
    return {
        "model": name, "on_disk": version_numbers(settings.triton.model_repository, name), "loaded": loaded,
        "production": route.production, "candidate": route.candidate, "mode": route.mode, "share": route.share,
        "last_events": [e.to_dict() for e in history[-5:]],
    }
