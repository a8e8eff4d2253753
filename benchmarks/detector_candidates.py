"""Score detector candidates on `tonewatch eval scenarios` (issue #28); prints the table in detector.md.

    .venv/bin/python benchmarks/detector_candidates.py [--seeds 7 8 9]

Each candidate is the shipped detector with one part taken out or changed, through its settings or the
module constants of streams/windows/changepoint.py; figures are pooled over the seeds (default keys and
hours). The pre-#28 detector is not reproducible from this tree: its row in detector.md was measured on
commit 2ea8e5c with the same simulator.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streams.windows import changepoint, spread
from tonewatch.core.sections import DetectorSettings
from tonewatch.evaluation.scenarios import run_scenarios


@contextmanager
def patched(**constants: Any) -> Iterator[None]:
    """Module constants of changepoint (or, where it has no such name, spread) set for one candidate, then
    restored."""
    owners = {k: changepoint if hasattr(changepoint, k) else spread for k in constants}
    saved = {k: getattr(owners[k], k) for k in constants}
    for k, v in constants.items():
        setattr(owners[k], k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(owners[k], k, v)


def _unconditioned(volume: Any, base: float, count: int) -> float:
    return max(volume.mean, 0.05)  # the usual negative count alone: a burst at the usual mix is evidence


def _window_alone(evidence: float, missing: int, verdict: Any, drift: float) -> float:
    return verdict.z if verdict.reason is not None else 0.0  # each window judged alone, nothing carried


CANDIDATES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("shipped: share + conditioned NB volume, z-CUSUM, slow-shift LLR CUSUM, robust learning, alpha 0.03", {}, {}),
    ("volume test not conditioned on the window's volume", {}, {"expected_negatives": _unconditioned}),
    ("Poisson volume tail (no over-dispersion)", {}, {"MAX_DISPERSION": 0.0}),
    ("no change-point: a window fires alone at z 4 (no evidence carried, no slow shift)", {"shift_nats": 1e9},
     {"accumulate": _window_alone}),
    ("change_drift 0 (no allowance: evidence from scattered windows never drains)", {"change_drift": 0.0}, {}),
    ("no slow-shift CUSUM", {"shift_nats": 1e9}, {}),
    ("outlier windows learnt at full rate", {}, {"OUTLIER_WEIGHT": 1.0}),
    ("fast baselines (baseline_alpha 0.2, as before #28)", {"baseline_alpha": 0.2}, {}),
    ("no outlast test: negatives that fit in one minute may fire (a lone window at z 6)", {},
     {"outlasts": lambda slices, base: True}),
]


def score(settings: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Recall, false alerts per key-day and median delay, pooled over the seeds."""
    cfg = DetectorSettings(top_messages=0, **settings)
    results = [run_scenarios(cfg, seed=s) for s in seeds]
    surges = sum(len(r.surges) for r in results)
    detected = [(r, i) for r in results for i in range(len(r.surges)) if r.matched[i]]
    false = sum(len(r.false_alerts) for r in results)
    days = sum(sum(r.key_days.values()) for r in results)
    delays = [r.matched[i][0].fired - r.surges[i].start for r, i in detected]
    return {"recall": len(detected) / surges, "fa": false / days, "false": false, "days": days,
            "delay": statistics.median(delays) if delays else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--only", type=int, nargs="*", help="Candidate rows to run (0-based), default all.")
    args = parser.parse_args()
    seeds = args.seeds
    print("| candidate | recall | false alerts / key-day | median delay s |")
    print("|---|---|---|---|")
    for i, (name, settings, constants) in enumerate(CANDIDATES):
        if args.only and i not in args.only:
            continue
        with patched(**constants):
            s = score(settings, seeds)
        print(f"| {name} | {s['recall']:.3f} | {s['fa']:.3f} ({s['false']} in {s['days']:.0f}) | {s['delay']:.0f} |")


if __name__ == "__main__":
    main()
