"""The score stage's scorer: a batch's messages through both Triton models (streams/score/triton_client.py),
routed by the model-events follower, joined into ``Scored`` records."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from streams.control.routing import Route
from streams.enrich import extract_tickers, mask_pii
from streams.knowledge import Knowledge
from streams.metrics import PipelineMetrics
from streams.records import Message, Scored
from streams.score.triton_client import ModelOutput

Routes = Callable[[], Mapping[str, Route]]


class Inference(Protocol):
    """What the scorer needs of Triton (``TritonScorer``, or a test's fake)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def score(self, texts: Sequence[str], keys: Sequence[str], routes: Routes) -> dict[str, ModelOutput]: ...


class Routing(Protocol):
    """The model-events follower: which version scores which message."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def routes(self) -> Mapping[str, Route]: ...


NON_FINITE = "the model returned non-finite probabilities (NaN or infinity)"


def model_texts(msgs: list[Message]) -> list[str]:
    """What the models read and the scored records keep: chat text masked, so personal data never leaves the
    worker (not even to Triton)."""
    return [mask_pii(m.text) if m.source == "chat" else m.text for m in msgs]


def to_scored(
    msgs: list[Message], texts: list[str], outputs: dict[str, Any], models: tuple[str, str], knowledge: Knowledge,
    ms: float, max_tickers: int,
) -> list[Scored | str]:
    """Both models' outputs joined to their messages, with ``texts`` (:func:`model_texts`). A message whose
    probabilities are not finite (possible with fp16 on a GPU) gets the reason it has no output instead.

    ``models``: the sentiment model's name, then the topic model's.
    """
    sent, top = outputs[models[0]], outputs[models[1]]
    finite = (np.isfinite(sent.probs).all(axis=1) & np.isfinite(top.probs).all(axis=1)).tolist()
    now = datetime.now(UTC)
    # per batch, not per cell: rounding, argmax and the conversion to Python floats
    sent_rows, top_rows = (o.probs.astype(np.float64).round(5).tolist() for o in (sent, top))
    sent_best, top_best = (o.probs.argmax(1).tolist() for o in (sent, top))
    sent_labels, top_labels = sent.labels, top.labels
    candidates = [(n, out.candidate) for n, out in outputs.items() if out.candidate]
    inference_ms = round(ms, 2)
    scored: list[Scored | str] = []
    for i, m in enumerate(msgs):
        if not finite[i]:
            scored.append(NON_FINITE)
            continue
        tickers = extract_tickers(m.text, m.tickers, knowledge.tickers_in(m.text), most=max_tickers)
        sectors = dict.fromkeys(s for s in map(knowledge.sector, tickers) if s)
        scored.append(Scored(
            id=m.id, source=m.source, ts=m.ts,
            text=texts[i],
            tickers=tickers, sectors=tuple(sectors),
            sentiment=sent_labels[sent_best[i]], sentiment_probs=dict(zip(sent_labels, sent_rows[i], strict=True)),
            topic=top_labels[top_best[i]], topic_probs=dict(zip(top_labels, top_rows[i], strict=True)),
            model_versions={models[0]: sent.versions[i], models[1]: top.versions[i]},
            candidate={n: c for n, cand in candidates if (c := cand[i]) is not None},
            scored_at=now, inference_ms=inference_ms,
        ))
    return scored


def _ignore(records: int, seconds: float) -> None:
    return None


class Scorer:
    """Owns the Triton client and the routes; ``observe`` hears each batch's inference time (read sizing)."""

    def __init__(self, inference: Inference, follower: Routing, models: tuple[str, str], knowledge: Knowledge,
                 metrics: PipelineMetrics, max_tickers: int, observe: Callable[[int, float], None] = _ignore) -> None:
        self.inference, self.follower = inference, follower
        self.models, self.knowledge, self.metrics = models, knowledge, metrics
        self.observe, self.max_tickers = observe, max_tickers

    async def start(self) -> None:
        await self.inference.start()
        await self.follower.start()  # caught up on model-events before the first message is routed

    async def stop(self) -> None:
        try:
            await self.follower.stop()
        finally:  # the channel is closed even when the follower fails to stop
            await self.inference.close()

    async def score(self, msgs: list[Message]) -> list[Scored | str]:
        """Raises on an inference error Triton will not recover from; the stage dead-letters the batch. A message
        without a usable output gets the reason instead of its record."""
        t0 = time.perf_counter()
        texts = model_texts(msgs)
        outputs = await self.inference.score(texts, [m.id for m in msgs], self.follower.routes)
        elapsed = time.perf_counter() - t0
        self.metrics.inference_seconds.observe(elapsed)
        self.observe(len(msgs), elapsed)
        return to_scored(msgs, texts, outputs, self.models, self.knowledge, elapsed * 1000, self.max_tickers)
