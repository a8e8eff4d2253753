"""Async Triton client: both models per micro-batch, retried until Triton answers.

Messages are never dropped on a Triton outage: the batch waits (backpressure on the
consumer) with capped exponential backoff, so the lag grows instead of data vanishing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from streams.control.routing import Route, pick_version, shadow_version
from tonewatch.core.errors import TritonError

log = logging.getLogger(__name__)

INPUT, OUTPUT = "TEXT", "PROBS"
# NOT_FOUND too: the models were checked at start-up, so a missing one is being (re)loaded, e.g. by a
# restarted Triton in explicit model-control mode; dead-lettering would lose the batch to an outage
RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "NOT_FOUND")
# while a starting worker waits for Triton: how often it asks, and how often it says it is still waiting
START_RETRY_S, START_LOG_S = 1.0, 60.0


class ModelMismatch(TritonError):
    """The deployed model does not have the inputs/outputs/batch size the worker needs."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    labels: tuple[str, ...]
    max_batch_size: int


@dataclass(frozen=True)
class ModelOutput:
    probs: np.ndarray  # (n, n_labels) float32
    labels: tuple[str, ...]
    versions: tuple[str, ...]  # per row: the version Triton says scored it
    candidate: tuple[dict[str, str] | None, ...] = ()  # per row: shadow label or canary failure, else None


NO_ROUTES: Callable[[], Mapping[str, Route]] = dict


def _version_gone(exc: InferenceServerException) -> bool:
    """A pinned version being swapped out: retry with fresh routing instead of dead-lettering."""
    text = str(exc).lower()
    return "is not found" in text or "not at ready state" in text or "unknown model" in text


class TritonScorer:
    """Owns one gRPC channel for the worker's lifetime."""

    def __init__(self, url: str, models: Sequence[str], timeout_s: float, max_request: int | None = None,
                 startup_timeout_s: float = 300.0) -> None:
        self._url = url
        self._startup_s = startup_timeout_s
        self._max_request = max_request  # rows per request; the model's max_batch_size caps it too
        self._names = tuple(models)
        self._timeout_s = timeout_s
        self._deadline_s = timeout_s  # grows while Triton is too slow for the deadline, see next_deadline
        self._client: grpcclient.InferenceServerClient | None = None
        self.specs: dict[str, ModelSpec] = {}

    async def start(self) -> None:
        """Wait until Triton serves every model as this worker needs it: Triton may still be starting, or
        loading them. After ``startup_timeout_s`` a TritonError says where, and what was last wrong."""
        self._client = grpcclient.InferenceServerClient(self._url)
        began = time.monotonic()
        said: float | None = None  # when the last "waiting" line went out: one a minute, not one a try
        while True:
            try:
                for name in self._names:
                    self.specs[name] = await self._check(name)
                if said is not None:
                    log.info("Triton at %s serves %s after %.0f s", self._url, ", ".join(self._names),
                             time.monotonic() - began)
                return
            except (InferenceServerException, ModelMismatch) as exc:
                now, cause = time.monotonic(), " ".join(str(exc).split())
                if now - began >= self._startup_s:
                    raise TritonError(
                        f"Triton at {self._url} did not serve {', '.join(self._names)} within {self._startup_s:g} s "
                        f"(TONEWATCH_TRITON__STARTUP_TIMEOUT_S): {cause}") from exc
                if said is None or now - said >= START_LOG_S:
                    log.info("waiting for Triton at %s to serve %s (%.0f of %g s): %s", self._url,
                             ", ".join(self._names), now - began, self._startup_s, cause)
                    said = now
                await asyncio.sleep(min(START_RETRY_S, self._startup_s - (now - began)))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _check(self, name: str) -> ModelSpec:
        """Start-up check that the deployed config matches what this worker sends."""
        client, deadline = self._require(), self._timeout_s  # a connection that hangs must not outlast the wait
        if not await client.is_model_ready(name, client_timeout=deadline):
            raise ModelMismatch(f"model '{name}' is not ready on Triton")
        cfg = (await client.get_model_config(name, as_json=True, client_timeout=deadline))["config"]
        inputs = {i["name"]: i for i in cfg.get("input", [])}
        outputs = {o["name"]: o for o in cfg.get("output", [])}
        if INPUT not in inputs or inputs[INPUT]["data_type"] != "TYPE_STRING":
            raise ModelMismatch(f"model '{name}' needs a TYPE_STRING input '{INPUT}'")
        if OUTPUT not in outputs:
            raise ModelMismatch(f"model '{name}' needs an output '{OUTPUT}'")
        labels = tuple(json.loads(cfg.get("parameters", {}).get("labels", {}).get("string_value", "[]")))
        dims = [int(d) for d in outputs[OUTPUT]["dims"]]
        if not labels or dims[-1] != len(labels):
            raise ModelMismatch(f"model '{name}': {len(labels)} labels but output dims {dims}")
        mbs = int(cfg.get("max_batch_size", 0))
        if mbs < 1:
            raise ModelMismatch(f"model '{name}' must support batching (max_batch_size > 0)")
        return ModelSpec(name, labels, mbs)

    def _require(self) -> grpcclient.InferenceServerClient:
        if self._client is None:
            raise RuntimeError("TritonScorer.start() was not awaited")
        return self._client

    async def _infer_chunk(self, name: str, texts: Sequence[str], version: int | None) -> tuple[np.ndarray, str]:
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        inp = grpcclient.InferInput(INPUT, list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        out = [grpcclient.InferRequestedOutput(OUTPUT)]
        res = await self._require().infer(name, [inp], model_version="" if version is None else str(version),
                                          outputs=out, client_timeout=self._deadline_s)
        probs = res.as_numpy(OUTPUT)
        if probs is None:
            raise InferenceServerException(f"model '{name}' returned no {OUTPUT}")
        return probs.astype(np.float32), str(res.get_response().model_version)

    async def _infer_version(self, name: str, texts: Sequence[str], version: int | None) -> tuple[np.ndarray, str]:
        step = min(self.specs[name].max_batch_size, self._max_request or self.specs[name].max_batch_size)
        parts = await asyncio.gather(
            *(self._infer_chunk(name, texts[i : i + step], version) for i in range(0, len(texts), step))
        )
        probs = np.concatenate([p for p, _ in parts]) if parts else np.zeros((0, len(self.specs[name].labels)))
        return probs, ",".join(sorted({v for _, v in parts}))

    async def _infer(self, name: str, texts: Sequence[str], keys: Sequence[str], route: Route) -> ModelOutput:
        """Each row by its routed version; a failing candidate falls back to production, noted per row."""
        labels = self.specs[name].labels
        probs = np.zeros((len(texts), len(labels)), dtype=np.float32)
        versions = [""] * len(texts)
        candidate: list[dict[str, str] | None] = [None] * len(texts)
        groups: dict[int | None, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(pick_version(route, key), []).append(i)
        for version, rows in groups.items():
            sub = [texts[i] for i in rows]
            try:
                p, served = await self._infer_version(name, sub, version)
            except InferenceServerException as exc:
                if version is None or version != route.candidate or _retryable(exc):
                    raise
                log.warning("candidate %s v%s failed, production scores instead: %s", name, version, exc)
                p, served = await self._infer_version(name, sub, route.production)
                for i in rows:
                    candidate[i] = {"version": str(version), "error": str(exc)[:200]}
            probs[rows] = p
            for i in rows:
                versions[i] = served
        shadow = shadow_version(route)
        if shadow is not None and texts:
            try:
                p, served = await self._infer_version(name, texts, shadow)
                for i, row in enumerate(p):
                    candidate[i] = {"version": served, "label": labels[int(np.argmax(row))]}
            except InferenceServerException as exc:  # a shadow never affects what is published
                candidate = [{"version": str(shadow), "error": str(exc)[:200]}] * len(texts)
        return ModelOutput(probs, labels, tuple(versions), tuple(candidate))

    async def score(
        self, texts: Sequence[str], keys: Sequence[str] | None = None,
        routes: Callable[[], Mapping[str, Route]] = NO_ROUTES, max_backoff_s: float = 5.0,
    ) -> dict[str, ModelOutput]:
        """Score with every model concurrently; retry retryable failures forever, re-reading the routes."""
        keys = keys if keys is not None else [str(i) for i in range(len(texts))]
        delay = 0.2
        while True:
            current = routes()
            try:
                results = await asyncio.gather(
                    *(self._infer(n, texts, keys, current.get(n, Route())) for n in self._names)
                )
                self._deadline_s = next_deadline(self._deadline_s, self._timeout_s, exceeded=False)
                return dict(zip(self._names, results, strict=True))
            except InferenceServerException as exc:
                if not _retryable(exc):
                    raise
                if "DEADLINE_EXCEEDED" in str(exc.status() or ""):
                    self._deadline_s = next_deadline(self._deadline_s, self._timeout_s, exceeded=True)
                log.warning("Triton unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_backoff_s)


def next_deadline(current_s: float, base_s: float, *, exceeded: bool, cap: float = 16.0) -> float:
    """Double the per-request deadline after a timeout, ease back after a success.

    A timed-out request is still computed by Triton; resending it with the same deadline on a
    saturated server only queues the same work again, so the backlog would never drain.
    """
    if exceeded:
        return min(current_s * 2, base_s * cap)
    return max(base_s, current_s / 2)


def _retryable(exc: InferenceServerException) -> bool:
    status = str(exc.status() or "")
    return any(code in status for code in RETRYABLE) or "unavailable" in str(exc).lower() or _version_gone(exc)
