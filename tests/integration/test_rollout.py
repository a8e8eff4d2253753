"""Rollout on real Kafka + Triton while a paced replay runs: canary and promote, automatic rollback, refusal.

Triton serves a COPY of the repository (versions are added), with explicit loads, exactly as
production; the worker is the real ``tonewatch worker`` subprocess. Swap figures are printed.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import REPO, Worker, wait_for
from tonewatch.kafka_io import iter_topic, producer, read_json
from tonewatch.settings import Settings
from tonewatch.stack import worker_env
from tonewatch.stack.loader import load_model, loaded_versions
from tonewatch.stack.triton import TritonProcess, start_triton, stop_triton

pytestmark = pytest.mark.integration


@pytest.fixture
def rollout_triton(stack_settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, TritonProcess]]:
    repo = tmp_path / "repo"
    for name in ("sentiment", "topic"):
        (repo / name).mkdir(parents=True)
        shutil.copyfile(REPO / "triton_repo" / name / "config.pbtxt", repo / name / "config.pbtxt")
        shutil.copytree(REPO / "triton_repo" / name / "1", repo / name / "1",
                        ignore=shutil.ignore_patterns("__pycache__"))
    settings = stack_settings.model_copy(update={"model_repository": repo, "run_dir": tmp_path / "run",
                                                 "triton_cpu_threads": 1})
    triton = start_triton(settings, tmp_path / "triton")
    try:
        settings = settings.model_copy(update={"triton_http_url": triton.http_url, "triton_grpc_url": triton.grpc_url})
        for name in ("sentiment", "topic"):
            load_model(settings, name)
        yield settings, triton
    finally:
        stop_triton(triton)


class PacedReplay:
    """Headlines at a steady rate on a thread, remembering when each id was produced."""

    def __init__(self, settings: Settings, rate: float) -> None:
        with (REPO / "data" / "news_sentiment.csv").open(encoding="utf-8", newline="") as fh:
            self.texts = [r["text"] for r in csv.DictReader(fh)]
        self.settings, self.rate = settings, rate
        self.produced: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        prod = producer(self.settings)
        i, start = 0, time.time()
        while not self._stop.is_set():
            mid = f"r-{i}"
            msg = {"id": mid, "source": "news", "text": self.texts[i % len(self.texts)],
                   "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
            self.produced[mid] = time.time()
            prod.send(self.settings.topic("news"), key=mid.encode(), value=json.dumps(msg).encode())
            i += 1
            time.sleep(max(0.0, start + i / self.rate - time.time()))
        prod.flush()
        prod.close()

    def __enter__(self) -> PacedReplay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cli(settings: Settings, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tonewatch", "models", *args], env=worker_env(settings), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def ready(settings: Settings) -> set[str]:
    return {v for v, state in loaded_versions(settings, "sentiment").items() if state == "READY"}


def worse_copy(src: Path, dest: Path) -> Path:
    """v1 with its output rows permuted: loads and sums to 1, but calls negative positive and so on."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src / "artifact", dest)
    tensors = load_file(str(dest / "head.safetensors"))
    last = max(k for k in tensors if k.endswith("weight"))
    for key in (last, last.replace("weight", "bias")):
        if key in tensors:
            tensors[key] = np.ascontiguousarray(tensors[key][::-1])
    save_file(tensors, str(dest / "head.safetensors"))
    return dest


def figures(replay: PacedReplay, scored: list[Any], windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Per phase (by produce time): scored msgs/s and produce->scored latency p50/p99."""
    ts = {json.loads(r.value)["id"]: r.timestamp / 1000 for r in scored}
    out = {}
    for phase, (lo, hi) in windows.items():
        ids = [i for i, t in replay.produced.items() if lo <= t < hi and i in ts]
        lat = np.array([(ts[i] - replay.produced[i]) * 1000 for i in ids])
        done = [ts[i] for i in ids]
        span = max(done) - min(done) if len(done) > 1 else 0.0
        out[phase] = {"messages": len(ids), "seconds": round(hi - lo, 1),
                      "scored_msgs_per_s": round(len(ids) / span, 2) if span else None,
                      "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                      "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None}
    return out


@pytest.mark.timeout(2400)  # four Triton loads of a CPU model on a shared 2-core box
def test_push_canary_promote_then_auto_rollback_and_refusal_without_losing_a_message(
    rollout_triton: tuple[Settings, TritonProcess], pipeline: Callable[..., Worker], tmp_path: Path
) -> None:
    base, _ = rollout_triton
    worker = pipeline(**{k: getattr(base, k) for k in
                         ("model_repository", "run_dir", "triton_http_url", "triton_grpc_url", "triton_cpu_threads")},
                      rollout_duration_s=20.0, rollout_settle_s=3.0, rollout_min_samples=10)
    settings = worker.settings
    repo = settings.model_repository / "sentiment"
    bad = tmp_path / "bad"
    shutil.copytree(repo / "1" / "artifact", bad)
    (bad / "head.safetensors").unlink()
    worse = worse_copy(repo / "1", tmp_path / "worse")

    windows: dict[str, tuple[float, float]] = {}
    with PacedReplay(settings, rate=4.0) as replay:
        time.sleep(15)
        t_swap = time.time()
        windows["steady"] = (replay.produced["r-0"] - 1, t_swap)
        push = cli(settings, "push", "sentiment", str(repo / "1"))
        assert push.returncode == 0 and "sentiment v2 pushed" in push.stdout, push.stderr
        out = cli(settings, "rollout", "sentiment", "2", "--canary", "0.5", "--json")
        assert out.returncode == 0, out.stdout + out.stderr + worker.log_tail()
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["action"] == "promoted" and result["live"]["candidate"] and result["live"]["errors"] == 0
        t_promoted = time.time()
        windows["swap (load, canary, promote, unload)"] = (t_swap, t_promoted)
        assert ready(settings) == {"2"}

        refused = cli(settings, "push", "sentiment", str(bad))
        assert refused.returncode == 2 and "head.safetensors: missing" in refused.stderr
        assert (repo / "3").exists() is False

        assert cli(settings, "push", "sentiment", str(worse)).returncode == 0
        t_worse = time.time()
        out = cli(settings, "rollout", "sentiment", "3", "--canary", "0.5", "--json")
        assert out.returncode == 1, out.stdout + out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["action"] == "rolled_back" and "golden accuracy" in result["reasons"][0]
        windows["worse version loaded and rolled back"] = (t_worse, time.time())
        assert ready(settings) == {"2"}
        t_after = time.time()
        time.sleep(10)
        windows["after"] = (t_after, time.time())

    n = len(replay.produced)
    records = wait_for(settings, "scored", n, worker, timeout_s=400)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == n and set(ids) == set(replay.produced)  # each id scored exactly once
    assert read_json(settings, settings.topic("dead-letter")) == []
    by_id = {r["id"]: r["model_versions"] for r in records}
    assert {v["sentiment"] for v in by_id.values()} == {"1", "2"} and {v["topic"] for v in by_id.values()} == {"1"}
    late = [i for i, t in replay.produced.items() if t > t_promoted]
    assert late and all(by_id[i]["sentiment"] == "2" for i in late)
    early = [i for i, t in replay.produced.items() if t < t_swap]
    assert all(by_id[i]["sentiment"] == "1" for i in early)

    metrics = worker.metrics()
    assert metrics['tonewatch_model_version_info{model="sentiment",role="production",version="2"}'] == 1
    assert metrics['tonewatch_canary_share{model="sentiment"}'] == 0
    status = json.loads(cli(settings, "status", "sentiment", "--json").stdout)[0]
    assert (status["production"], status["candidate"], status["on_disk"]) == (2, None, [1, 2, 3])
    kinds = [json.loads(r.value)["event"] for r in iter_topic(settings, settings.topic("model-events"))]
    assert kinds == ["promoted", "loaded", "canary", "promoted", "unloaded", "loaded", "rolled_back", "unloaded"]
    print("\nrollout figures:", json.dumps(figures(replay, list(iter_topic(settings, settings.topic("scored"))),
                                                    windows), indent=2))
