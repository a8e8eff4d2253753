"""Triton's serving ceiling for the worker's model pair, measured the way perf_analyzer does.

Every request is one micro-batch sent to BOTH models, as the worker sends it, over tritonclient's async
gRPC client at a fixed concurrency; batches cycle through the texts the end-to-end run sent
(docs/decisions/2026-12-07-serving-ceiling.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

METHOD = ("tritonclient async gRPC, concurrency {c}, batch {b}, both models per message, batches cycling through"
          " the texts sent end to end (perf_analyzer-style)")


def batches(texts: Sequence[str], batch: int) -> list[list[str]]:
    """Consecutive batches covering ``texts`` in order, the last one wrapping round to stay full."""
    if not texts:
        raise ValueError("no texts to measure with")
    n = len(texts)
    return [[texts[(start + i) % n] for i in range(batch)] for start in range(0, n, batch)]


async def _ceiling(url: str, models: Sequence[str], texts: Sequence[str], concurrency: int, batch: int,
                   duration_s: float, warmup_s: float) -> float:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    arrays = [np.array([[t.encode()] for t in b], dtype=np.object_) for b in batches(texts, batch)]
    done = 0
    sent_total = 0
    counting = False

    async def one() -> None:
        nonlocal sent_total
        data = arrays[sent_total % len(arrays)]
        sent_total += 1
        inp = grpcclient.InferInput("TEXT", list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        await asyncio.gather(*(client.infer(m, [inp]) for m in models))

    async def loop(stop_at: float, min_requests: int) -> None:
        nonlocal done
        sent = 0
        while time.monotonic() < stop_at or sent < min_requests:
            await one()
            sent += 1
            if counting:
                done += batch

    try:
        start = time.monotonic()
        await asyncio.gather(*(loop(start + warmup_s, 1) for _ in range(concurrency)))
        counting = True
        # closed loop: every counted request completes inside the timed span, so a slow server
        # (one batch taking longer than the span) is not under-counted
        t0 = time.monotonic()
        await asyncio.gather(*(loop(t0 + duration_s, 1) for _ in range(concurrency)))
        return done / (time.monotonic() - t0)
    finally:
        await client.close()


def triton_ceiling(url: str, models: Sequence[str], texts: Sequence[str], *, concurrency: int = 8,
                   batch: int = 64, duration_s: float = 20.0, warmup_s: float = 5.0) -> tuple[float, str]:
    """Messages/s both models sustain at ``concurrency`` in-flight batches, and how it was measured."""
    rate = asyncio.run(_ceiling(url, models, texts, concurrency, batch, duration_s, warmup_s))
    return rate, METHOD.format(c=concurrency, b=batch)
