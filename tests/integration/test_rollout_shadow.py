"""Shadow rollout on real Kafka + Triton while a paced replay runs: production's result is published, the
candidate's label rides along, and the agreement gate promotes or rolls back.

The fixtures and helpers are test_rollout's; this module starts its own copy of that module's Triton.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration import test_rollout
from tests.integration.conftest import Worker
from tests.integration.test_rollout import PacedReplay, cli, figures, ready, rollout_worker, scored_once, worse_copy
from tonewatch.core.kafka_io import iter_topic
from tonewatch.core.settings import Settings
from tonewatch.stack.triton import TritonProcess

pytestmark = pytest.mark.integration

# pytest looks fixtures up in the test's module: these are test_rollout's, module-scoped here too
rollout_stack = test_rollout.rollout_stack
rollout_triton = test_rollout.rollout_triton


@pytest.mark.timeout(1800)
def test_shadow_scores_with_production_and_the_agreement_gate_decides(
    rollout_triton: tuple[Settings, TritonProcess], pipeline: Callable[..., Worker], tmp_path: Path
) -> None:
    """Identical weights in shadow are promoted; a rotated head is rolled back on agreement, not golden."""
    worker = rollout_worker(rollout_triton, pipeline, duration_s=15.0)
    settings = worker.settings
    repo = settings.triton.model_repository / "sentiment"
    rotated = worse_copy(repo / "1", tmp_path / "rotated", shift=1)  # every label changes
    lenient = settings.updated(rollout__max_golden_drop=1.0)  # only the live gates may refuse it

    windows: dict[str, tuple[float, float]] = {}
    with PacedReplay(settings, rate=4.0) as replay:
        time.sleep(8)
        assert cli(settings, "push", "sentiment", str(repo / "1")).returncode == 0
        t_shadow = time.time()
        out = cli(settings, "rollout", "sentiment", "2", "--shadow", "--json")
        assert out.returncode == 0, out.stdout + out.stderr + worker.log_tail()
        same = json.loads(out.stdout.strip().splitlines()[-1])
        t_promoted = time.time()
        windows["shadow of identical v2, promoted"] = (t_shadow, t_promoted)
        assert same["action"] == "promoted" and same["live"]["compared"] >= 10, same
        assert same["live"]["agreements"] == same["live"]["compared"] and same["live"]["errors"] == 0, same
        assert ready(settings) == {"2"}

        assert cli(settings, "push", "sentiment", str(rotated)).returncode == 0
        t_rotated = time.time()
        out = cli(lenient, "rollout", "sentiment", "3", "--shadow", "--json")
        assert out.returncode == 1, out.stdout + out.stderr + worker.log_tail()
        bad = json.loads(out.stdout.strip().splitlines()[-1])
        windows["shadow of rotated v3, rolled back"] = (t_rotated, time.time())
        assert bad["action"] == "rolled_back" and bad["live"]["compared"] >= 10, bad
        assert any(r.startswith("agreement") for r in bad["reasons"]) and bad["live"]["agreements"] == 0, bad
        assert ready(settings) == {"2"}
        time.sleep(3)

    records = scored_once(settings, worker, replay)
    shadowed = {r["id"]: r for r in records if "sentiment" in r.get("candidate", {})}
    by_candidate: dict[str, list[dict[str, Any]]] = {"2": [], "3": []}
    for r in shadowed.values():  # a candidate's errors (none expected) would carry no label
        if "label" in r["candidate"]["sentiment"]:
            by_candidate[r["candidate"]["sentiment"]["version"]].append(r)
    # production published every message; the shadow's label rode along in `candidate`
    assert len(by_candidate["2"]) >= 10 and all(r["model_versions"]["sentiment"] == "1" for r in by_candidate["2"])
    assert all(r["candidate"]["sentiment"]["label"] == r["sentiment"] for r in by_candidate["2"])
    assert len(by_candidate["3"]) >= 10 and all(r["model_versions"]["sentiment"] == "2" for r in by_candidate["3"])
    assert all(r["candidate"]["sentiment"]["label"] != r["sentiment"] for r in by_candidate["3"])
    late = {i for i, t in replay.produced.items() if t > t_promoted}
    assert late and all(r["model_versions"]["sentiment"] == "2" for r in records if r["id"] in late)
    kinds = [json.loads(r.value)["event"] for r in iter_topic(settings.kafka, settings.kafka.topic("model-events"))]
    assert kinds == ["promoted", "loaded", "shadow", "promoted", "unloaded", "loaded", "shadow", "rolled_back",
                     "unloaded"]
    scored = list(iter_topic(settings.kafka, settings.kafka.topic("scored")))
    print("\nshadow figures:", json.dumps(figures(replay, scored, windows), indent=2))
