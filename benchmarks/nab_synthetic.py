"""Write NAB-format series of kinds realTweets lacks, with labelled windows, to try `tonewatch eval nab` on (#28).

    .venv/bin/python -m benchmarks.nab_synthetic --out DIR [--seed 7]

realTweets holds only counts that surge upwards. NAB's other folders (held out here) are machine metrics,
temperatures, prices and traffic: continuous values, anomalies either way, samples every 5 minutes to every
hour. These series are made here, from a seed, in those shapes (none is copied or fitted from NAB's data):
``DIR/synthetic/*.csv`` (timestamp,value) and ``DIR/labels/combined_windows.json`` with NAB's window rule
(a tenth of a file's length, shared among its anomalies, centred on each). Files without anomalies must stay
silent. Score ``DIR`` with NAB's own scorer from a checkout outside this repository.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

START = datetime(2024, 3, 4, tzinfo=UTC).timestamp()
Series = tuple[np.ndarray, list[int]]  # the values and where each anomaly starts (point index)
Maker = Callable[[np.random.Generator, int, float], Series]


def _daily(n: int, step: float, amp: float = 0.5) -> np.ndarray:
    hours = (np.arange(n) * step / 3600.0) % 24
    return 1 + amp * np.sin((hours - 9) / 24 * 2 * np.pi)


def _ar(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    e, out = rng.normal(0, sigma, n), np.zeros(n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + e[i]
    return out


def jump_up(rng: np.random.Generator, n: int, step: float) -> Series:
    x, at = 50 * _daily(n, step) + rng.normal(0, 3, n), int(n * 0.7)
    x[at:at + int(86400 / step)] += 40
    return x, [at]


def jump_down(rng: np.random.Generator, n: int, step: float) -> Series:
    x, at = 50 * _daily(n, step) + rng.normal(0, 3, n), int(n * 0.65)
    x[at:at + int(43200 / step)] *= 0.4
    return x, [at]


def level_drop(rng: np.random.Generator, n: int, step: float) -> Series:
    """A machine that runs warm and noisy, then cools towards failure over a few hours."""
    x, at = 85 + _ar(rng, n, 0.95, 0.8), int(n * 0.8)
    ramp = np.minimum(np.arange(n - at) / (14400 / step), 1.0)
    x[at:] -= 30 * ramp
    return x, [at]


def spikes_up(rng: np.random.Generator, n: int, step: float) -> Series:
    """CPU-like: low, noisy, a few lone spikes as its normal; then a sustained high load."""
    x = np.abs(8 + _ar(rng, n, 0.7, 1.5))
    lone = rng.choice(n, size=n // 300, replace=False)
    x[lone] += rng.uniform(10, 25, lone.size)
    at = int(n * 0.6)
    x[at:at + int(7200 / step)] = 80 + rng.normal(0, 4, int(7200 / step))
    return x, [at]


def hourly_both(rng: np.random.Generator, n: int, step: float) -> Series:
    """Hourly temperature-like series: a heat spike, later a cold dip."""
    x = 70 + 3 * np.sin(np.arange(n) * step / 86400 * 2 * np.pi) + _ar(rng, n, 0.8, 0.6)
    up, down = int(n * 0.45), int(n * 0.8)
    x[up:up + 6] += 12
    x[down:down + 8] -= 12
    return x, [up, down]


def taxi_dip(rng: np.random.Generator, n: int, step: float) -> Series:
    """Half-hourly demand with a strong daily cycle; a holiday at half demand, later an event surge."""
    x = 15000 * _daily(n, step, 0.8) * rng.normal(1, 0.05, n)
    day, dip, surge = int(86400 / step), int(n * 0.5), int(n * 0.85)
    x[dip:dip + day] *= 0.5
    x[surge:surge + 6] *= 1.8
    return x, [dip, surge]


def count_outage(rng: np.random.Generator, n: int, step: float) -> Series:
    """Request counts: Poisson around a daily cycle; the service goes down for an hour, later a burst."""
    x = rng.poisson(120 * _daily(n, step)).astype(float)
    down, burst = int(n * 0.5), int(n * 0.82)
    x[down:down + int(3600 / step)] = rng.poisson(3, int(3600 / step))
    x[burst:burst + int(1800 / step)] *= 3
    return x, [down, burst]


def new_normal(rng: np.random.Generator, n: int, step: float) -> Series:
    """A deploy moves a metric to a new level for good; days later, a spike on the new level."""
    x = 30 + _ar(rng, n, 0.6, 2.0)
    shift, spike = int(n * 0.35), int(n * 0.85)
    x[shift:] += 25
    x[spike:spike + 4] += 40
    return x, [shift, spike]


def spike_density(rng: np.random.Generator, n: int, step: float) -> Series:
    """Lone spikes a few times a day are the normal; then for half a day they come every few points."""
    x = 20 + rng.normal(0, 1.5, n)
    lone = rng.choice(n, size=n // 150, replace=False)
    x[lone] += 15
    at = int(n * 0.75)
    dense = np.arange(at, at + int(43200 / step), 4)
    x[dense] += 15
    return x, [at]


def sparse_counts(rng: np.random.Generator, n: int, step: float) -> Series:
    return rng.poisson(0.3, n).astype(float), []


def heavy_tailed(rng: np.random.Generator, n: int, step: float) -> Series:
    return np.exp(rng.normal(3, 0.6, n)) * _daily(n, step, 0.3), []


def quiet_daily(rng: np.random.Generator, n: int, step: float) -> Series:
    return 50 * _daily(n, step) + rng.normal(0, 2, n), []


def noisy_walk(rng: np.random.Generator, n: int, step: float) -> Series:
    return 40 + _ar(rng, n, 0.99, 0.5), []


def square_wave(rng: np.random.Generator, n: int, step: float) -> Series:
    hours = (np.arange(n) * step / 3600.0) % 24
    return np.where((hours >= 8) & (hours < 18), 80.0, 20.0), []


def flatline(rng: np.random.Generator, n: int, step: float) -> Series:
    return np.full(n, 42.0), []


KINDS: dict[str, tuple[Maker, float, int]] = {  # maker, step in seconds, points
    "jump_up": (jump_up, 300, 4032),
    "jump_down": (jump_down, 300, 4032),
    "level_drop": (level_drop, 300, 5000),
    "spikes_up": (spikes_up, 300, 4032),
    "hourly_both": (hourly_both, 3600, 2000),
    "taxi_dip": (taxi_dip, 1800, 3000),
    "count_outage": (count_outage, 300, 6000),
    "new_normal": (new_normal, 300, 4032),
    "spike_density": (spike_density, 300, 4032),
    "sparse_counts": (sparse_counts, 300, 4032),
    "heavy_tailed": (heavy_tailed, 300, 4032),
    "quiet_daily": (quiet_daily, 300, 4032),
    "noisy_walk": (noisy_walk, 300, 4032),
    "square_wave": (square_wave, 300, 4032),
    "flatline": (flatline, 300, 4032),
}


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def windows(times: list[str], starts: list[int]) -> list[list[str]]:
    """NAB's rule: a tenth of the file's length shared among its anomalies, each window centred on one."""
    if not starts:
        return []
    half = int(len(times) * 0.1 / len(starts) / 2)
    return [[times[max(a - half, 0)] + ".000000", times[min(a + half, len(times) - 1)] + ".000000"] for a in starts]


def write(out: Path, seed: int) -> dict[str, list[list[str]]]:
    """Write every kind's series; returns the windows as written to the labels file."""
    labels: dict[str, list[list[str]]] = {}
    (out / "synthetic").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for i, (name, (make, step, n)) in enumerate(KINDS.items()):
        values, starts = make(np.random.default_rng(seed * 100 + i), n, step)
        times = [_stamp(START + k * step) for k in range(n)]
        with (out / "synthetic" / f"{name}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows([t, f"{v:.4f}".rstrip("0").rstrip(".") or "0"] for t, v in zip(times, values, strict=True))
        labels[f"synthetic/{name}.csv"] = windows(times, starts)
    (out / "labels" / "combined_windows.json").write_text(json.dumps(labels, indent=1))
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    labels = write(args.out, args.seed)
    print(f"{len(labels)} series, {sum(map(len, labels.values()))} anomalies, under {args.out}")


if __name__ == "__main__":
    main()
