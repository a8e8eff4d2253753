"""Write NAB-format scores for each NAB candidate in benchmarks/detector.md (issue #28, the NAB section).

    .venv/bin/python benchmarks/nab_candidates.py --data NAB/data/realTweets --out OUT [NAME ...]

Each candidate is ``tonewatch eval nab``'s configuration (``NabConfig``) with one part taken out or changed;
its scores go to ``OUT/NAME`` in the layout of ``--data``, for NAB's own scorer, run from a NAB checkout
outside this repository (NAB's code is never committed here): score each ``OUT/NAME`` as a detector of its
own, normalised against NAB's null detector, at threshold 0.5 and with NAB's threshold optimiser.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from tonewatch.evaluation.nab import NabConfig, score_tree

OFF: dict[str, Any] = {"clock_buckets": 0, "sustained_s": 0.0, "novelty_days": 0, "quiet_s": 0.0}
CANDIDATES: dict[str, dict[str, Any]] = {
    "shipped": {},
    "before": OFF,  # the pre-clock evaluation: NB cap and z-CUSUM only
    "no_clock": {"clock_buckets": 0},
    "clock48": {"clock_buckets": 48},
    "clock168": {"clock_buckets": 168},
    "clock_slow": {"clock_alpha": 0.05},
    "clock_robust": {"clock_outlier_weight": 0.1},
    "robust_learning": {"clock_outlier_weight": 0.1, "level_outlier_weight": 0.1},
    "no_hour": {"sustained_s": 0.0},
    "no_novelty": {"novelty_days": 0},
    "novelty7": {"novelty_days": 7},
    "no_quiet_day": {"quiet_s": 0.0},
    "alpha002": {"alpha": 0.02},
    "alpha01": {"alpha": 0.1},
    "drift1": {"drift": 1.0},
    "rises_only": {"two_sided": False, "count_drops": False},
    "no_count_drops": {"count_drops": False},
    "frozen_while_firing": {"firing_weight": 0.0},
    "first_day_uncapped": {"first_day_cap": 1e9},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder of NAB-format CSVs")
    parser.add_argument("--out", type=Path, required=True, help="one folder per candidate is written here")
    parser.add_argument("names", nargs="*", default=list(CANDIDATES), help="candidates (default: all)")
    args = parser.parse_args()
    for name in args.names:
        scored, _ = score_tree(args.data, args.out / name, replace(NabConfig(), **CANDIDATES[name]))
        print(f"{name}: {len(scored)} files into {args.out / name}")


if __name__ == "__main__":
    main()
