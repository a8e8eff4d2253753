"""Rollout on real Kafka + Triton while a paced replay runs: canary and promote, automatic rollback, refusal.

Triton serves a COPY of the repository (versions are added), with explicit loads, exactly as
production; the worker is the real ``tonewatch worker`` subprocess. Swap figures are printed.
Shadow rollouts are in test_rollout_shadow.py, which shares these fixtures and helpers.
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

from models.triton_admin import load_model, loaded_versions
from tests.integration.conftest import REPO, Worker, wait_for
from tonewatch.core.kafka_io import iter_topic, producer, read_json
from tonewatch.core.settings import Settings
from tonewatch.stack import worker_env
from tonewatch.stack.triton import TritonProcess, start_triton, stop_triton

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rollout_stack(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, TritonProcess]]:
    """One Triton for the module (its start and first loads are minutes on a shared CPU box)."""
    repo = tmp_path_factory.mktemp("rollout") / "repo"
    for name in ("sentiment", "topic"):
        (repo / name).mkdir(parents=True)
        shutil.copyfile(REPO / "triton_repo" / name / "config.pbtxt", repo / name / "config.pbtxt")
        shutil.copytree(REPO / "triton_repo" / name / "1", repo / name / "1",
                        ignore=shutil.ignore_patterns("__pycache__"))
    settings = stack_settings.updated(triton__model_repository=repo, triton__cpu_threads=1)
    triton = start_triton(settings, repo.parent / "triton")
    try:
        yield repo, triton
    finally:
        stop_triton(triton)


@pytest.fixture
def rollout_triton(
    rollout_stack: tuple[Path, TritonProcess], stack_settings: Settings, tmp_path: Path
) -> tuple[Settings, TritonProcess]:
    """Triton serving a COPY of the repository with v1 of each model only, whatever an earlier test left."""
    repo, triton = rollout_stack
    settings = stack_settings.updated(
        triton__model_repository=repo, run_dir=tmp_path / "run", triton__cpu_threads=1,
        triton__http_url=triton.http_url, triton__grpc_url=triton.grpc_url)
    for name in ("sentiment", "topic"):
        if ready(settings, name) != {"1"}:  # first test, or a previous one promoted v2: serve v1 alone again
            load_model(settings, name, versions=[1])
        for extra in (p for p in (repo / name).iterdir() if p.is_dir() and p.name != "1"):
            shutil.rmtree(extra)
    return settings, triton


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
        prod = producer(self.settings.kafka)
        i, start = 0, time.time()
        while not self._stop.is_set():
            mid = f"r-{i}"
            msg = {"id": mid, "source": "news", "text": self.texts[i % len(self.texts)],
                   "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
            self.produced[mid] = time.time()
            prod.send(self.settings.kafka.topic("news"), key=mid.encode(), value=json.dumps(msg).encode())
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


def ready(settings: Settings, name: str = "sentiment") -> set[str]:
    return {v for v, state in loaded_versions(settings, name).items() if state == "READY"}


def worse_copy(src: Path, dest: Path, shift: int | None = None) -> Path:
    """v1 with its output rows permuted: loads and sums to 1, but calls negative positive and so on.

    Reversed by default (neutral stays neutral); ``shift`` rotates them instead, so every label changes.
    """
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src / "artifact", dest)
    tensors = load_file(str(dest / "head.safetensors"))
    last = max(k for k in tensors if k.endswith("weight"))
    for key in (last, last.replace("weight", "bias")):
        if key in tensors:
            rows = tensors[key][::-1] if shift is None else np.roll(tensors[key], shift, axis=0)
            tensors[key] = np.ascontiguousarray(rows)
    save_file(tensors, str(dest / "head.safetensors"))
    manifest = json.loads((dest / "manifest.json").read_text())  # the ONNX graph holds the old head: drop it,
    manifest.pop("runtime", None)                                # so CPU serving runs the edited torch weights
    (dest / "manifest.json").write_text(json.dumps(manifest))
    for graph in dest.glob("*.onnx"):
        graph.unlink()
    return dest


def on_rollout_triton(base: Settings) -> dict[str, Any]:
    """Settings overrides that point a pipeline worker at the module's own Triton and repository."""
    t = base.triton
    return {"triton__model_repository": t.model_repository, "run_dir": base.run_dir, "triton__http_url": t.http_url,
            "triton__grpc_url": t.grpc_url, "triton__cpu_threads": t.cpu_threads}


def rollout_worker(
    rollout_triton: tuple[Settings, TritonProcess], pipeline: Callable[..., Worker], duration_s: float
) -> Worker:
    """A pipeline worker on the module's Triton that judges a rollout on ``duration_s`` of live traffic."""
    base, _ = rollout_triton
    return pipeline(**on_rollout_triton(base),
                    rollout__duration_s=duration_s, rollout__settle_s=3.0, rollout__min_samples=10)


def scored_once(settings: Settings, worker: Worker, replay: PacedReplay) -> list[dict[str, Any]]:
    """The scored records once every produced id is in, each exactly once, with nothing dead-lettered."""
    n = len(replay.produced)
    records = wait_for(settings, "scored", n, worker, timeout_s=400)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == n and set(ids) == set(replay.produced)  # each id scored exactly once
    assert read_json(settings.kafka, settings.kafka.topic("dead-letter")) == []
    return records


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
    worker = rollout_worker(rollout_triton, pipeline, duration_s=20.0)
    settings = worker.settings
    repo = settings.triton.model_repository / "sentiment"
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

    records = scored_once(settings, worker, replay)
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
    kinds = [json.loads(r.value)["event"] for r in iter_topic(settings.kafka, settings.kafka.topic("model-events"))]
    assert kinds == ["promoted", "loaded", "canary", "promoted", "unloaded", "loaded", "rolled_back", "unloaded"]
    scored = list(iter_topic(settings.kafka, settings.kafka.topic("scored")))
    print("\nrollout figures:", json.dumps(figures(replay, scored, windows), indent=2))


def stub_pids(triton: TritonProcess, name: str) -> dict[str, list[str]]:
    """Version -> pids of its Python stub processes: a re-initialised version gets a new process."""
    out: dict[str, list[str]] = {}
    children = subprocess.run(["pgrep", "-P", str(triton.pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        parts = Path(args[1].decode()).parts if len(args) > 1 else ()
        if len(parts) >= 3 and parts[-1] == "model.py" and parts[-3] == name:
            out.setdefault(parts[-2], []).append(pid)
    return out


def settled_pids(triton: TritonProcess, name: str, versions: set[str]) -> dict[str, list[str]]:
    """Once Triton has finished unloading what it replaced or dropped (it does so asynchronously)."""
    deadline, pids = time.monotonic() + 60, stub_pids(triton, name)
    while (set(pids) != versions or any(len(p) > 1 for p in pids.values())) and time.monotonic() < deadline:
        time.sleep(0.5)
        pids = stub_pids(triton, name)
    return pids


@pytest.mark.timeout(600)
def test_a_swap_initialises_only_the_new_version(rollout_triton: tuple[Settings, TritonProcess]) -> None:
    """Loading a candidate beside production, then dropping production, leaves loaded versions untouched."""
    from models.publish import push_version

    settings, triton = rollout_triton
    before = settled_pids(triton, "sentiment", {"1"})
    version = push_version(settings, "sentiment", settings.triton.model_repository / "sentiment" / "1")
    seconds = {}
    t0 = time.monotonic()
    load_model(settings, "sentiment", versions=[1, version])
    seconds["candidate beside production"] = round(time.monotonic() - t0, 2)
    beside = settled_pids(triton, "sentiment", {"1", str(version)})
    assert beside["1"] == before["1"], "production was re-initialised by the candidate's load"
    t0 = time.monotonic()
    load_model(settings, "sentiment", versions=[version])
    seconds["promote (drop the old production)"] = round(time.monotonic() - t0, 2)
    after = settled_pids(triton, "sentiment", {str(version)})
    assert after == {str(version): beside[str(version)]}, "the new production was re-initialised by the swap"
    print("\nswap load seconds:", json.dumps(seconds))


def test_an_experiment_on_shared_data_is_never_served_and_sync_replaces_it(
    rollout_triton: tuple[Settings, TritonProcess],
) -> None:
    """Triton's own policy loads the newest version; before any model event, sync serves the newest servable."""
    import uuid

    from models.publish import push_version

    base, _ = rollout_triton
    settings = base.updated(kafka__topic_prefix=f"t{uuid.uuid4().hex[:10]}")  # no model events yet
    version = push_version(settings, "sentiment", settings.triton.model_repository / "sentiment" / "1")
    manifest = settings.triton.model_repository / "sentiment" / str(version) / "artifact" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "shared_data": ["phrasebank"]}))
    load_model(settings, "sentiment", versions=[version])  # what a Triton restart does: the newest on disk
    assert ready(settings) == {str(version)}

    synced = cli(settings, "sync", "sentiment")
    assert synced.returncode == 0 and "sentiment: loaded [1]" in synced.stdout, synced.stdout + synced.stderr
    assert ready(settings) == {"1"}
    refused = cli(settings, "rollout", "sentiment", str(version), "--canary", "0.5")
    assert refused.returncode == 2
    assert f"sentiment v{version} was trained on phrasebank" in refused.stdout + refused.stderr
    assert ready(settings) == {"1"}
