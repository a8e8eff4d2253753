"""The open-loop curve and the surge-to-alert time on the trivial models, run by ``tonewatch bench`` while the
pipeline-only Triton is up; each on fresh topics with a worker of its own, stopped before the next starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tonewatch.core.settings import Settings
from tonewatch.perf.openloop import STEP_FRACTIONS, run_open_loop

CEILING_SOURCE = "pipeline_only.drain_msgs_per_s of the same run (trivial models, one worker)"


@dataclass(frozen=True)
class LatencyOptions:
    """What ``tonewatch bench`` adds to its pipeline-only figures; defaults keep the whole at a few minutes."""

    open_loop: bool = True
    step_s: float = 12.0
    fractions: tuple[float, ...] = STEP_FRACTIONS
    plot_path: Path | None = None  # None: open-loop.png in the bench's work dir
    surge: bool = True
    surge_rate: float = 40.0  # msg/s of the steady feed, all of one ticker
    surge_window_s: int = 10  # the detector's window and lateness for this worker only, so the run stays short
    surge_lateness_s: int = 2


def run_latency(fresh: Callable[[], Settings], start_worker: Callable[[Settings], int], ceiling: float,
                opts: LatencyOptions, work_dir: Path, progress: Callable[[dict[str, Any]], None] | None = None
                ) -> dict[str, Any]:
    """``result["open_loop"]`` and ``result["surge_to_alert"]`` as ``opts`` asks; ``fresh()`` gives settings on
    new topics against the trivial Triton, ``start_worker`` starts a worker on them and returns its pid."""
    from tonewatch.perf.surge_latency import run_surge
    from tonewatch.stack.procs import stop

    result: dict[str, Any] = {}
    pids: list[int] = []

    def started(s: Settings) -> int:
        pids.append(start_worker(s))
        return pids[-1]

    if opts.open_loop:
        try:
            curve = run_open_loop(fresh(), ceiling, started, fractions=opts.fractions, step_s=opts.step_s,
                                  plot_path=opts.plot_path or work_dir / "open-loop.png")
        finally:
            for pid in pids:
                stop(pid, timeout_s=30)
            pids.clear()
        result["open_loop"] = {"ceiling_source": CEILING_SOURCE, **curve}
        if progress is not None:
            progress(result)
    if opts.surge:
        try:
            result["surge_to_alert"] = {
                "detector_overrides": {"TONEWATCH_DETECTOR__WINDOW_S": opts.surge_window_s,
                                       "TONEWATCH_DETECTOR__ALLOWED_LATENESS_S": opts.surge_lateness_s,
                                       "TONEWATCH_SCORING__MAX_FUTURE_S": opts.surge_lateness_s / 2},
                **run_surge(fresh(), started, rate=opts.surge_rate, window_s=opts.surge_window_s,
                            lateness_s=opts.surge_lateness_s)}
        finally:
            for pid in pids:
                stop(pid, timeout_s=30)
    return result
