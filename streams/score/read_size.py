"""How many input records the score stage takes at once: sized by how fast it has been scoring.

A large batch amortises the per-batch costs (a fetch, a produce request per partition, a commit); on
slow models the same batch is seconds of inference that every message in it waits for, and a burst's
median latency grows with it. So the batch holds about ``target_s`` of scoring at the recent rate, in
whole Triton requests, between ``min_requests`` requests and ``ceiling``. Two requests at least: with two
batches in flight, Triton then has several requests per model to work on (figures: benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReadSize:
    request: int  # records per Triton request: the smallest batch, and the step
    ceiling: int  # the most records a batch may take
    target_s: float  # seconds of scoring a batch should hold
    min_requests: int = 2
    rate: float | None = None  # records scored per second, smoothed; None until the first batch

    def observe(self, records: int, seconds: float, weight: float = 0.5) -> None:
        """One batch's inference: ``records`` in ``seconds``. Smoothed, so one slow request does not
        shrink the next batch to nothing."""
        if records <= 0 or seconds <= 0:
            return
        rate = records / seconds
        self.rate = rate if self.rate is None else (1 - weight) * self.rate + weight * rate

    def next(self) -> int:
        """Records for the next batch: the smallest batch until a rate is known."""
        floor = min(self.request * self.min_requests, self.ceiling)
        if self.rate is None:
            return floor
        whole = int(self.rate * self.target_s) // self.request * self.request
        return max(floor, min(whole, self.ceiling))
