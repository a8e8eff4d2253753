"""Bench helpers that need no broker: the message set and how the serving ceiling is labelled."""

from __future__ import annotations

import json
from pathlib import Path

from models.triton_admin import parse_model_config
from streams.records import parse_message
from tonewatch.bench import bench_messages
from tonewatch.core.sections import ScoringSettings
from tonewatch.perf.ceiling import METHOD, batches
from tonewatch.perf.trivial import TRIVIAL_REPO, ports_of
from tonewatch.stack.triton import TritonProcess


def test_bench_messages_are_valid_unique_and_in_event_time_order() -> None:
    msgs = bench_messages(500)
    parsed = [parse_message(json.dumps(m), ScoringSettings()) for m in msgs]
    assert len({m.id for m in parsed}) == 500
    assert [m.ts for m in parsed] == sorted(m.ts for m in parsed)


def test_ceiling_method_says_it_is_not_perf_analyzer() -> None:
    text = METHOD.format(c=8, b=64)
    assert "tritonclient" in text and "concurrency 8" in text and "batch 64" in text


def test_trivial_repo_mirrors_the_served_models_inputs_outputs_and_labels() -> None:
    served = Path(__file__).resolve().parents[2] / "triton_repo"
    for name in ("sentiment", "topic"):
        trivial = parse_model_config(TRIVIAL_REPO / name / "config.pbtxt")
        real = parse_model_config(served / name / "config.pbtxt")
        assert trivial.name == real.name and trivial.max_batch_size == real.max_batch_size
        assert trivial.input == real.input and trivial.output == real.output
        assert trivial.parameters["labels"] == real.parameters["labels"]
        assert (TRIVIAL_REPO / name / "1" / "model.py").is_file()


def test_ports_of_a_triton_process() -> None:
    proc = TritonProcess(1, "127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002", Path("x.log"))
    assert ports_of(proc) == (8000, 8001, 8002)


def test_ceiling_batches_cover_the_sent_texts_in_order_and_stay_full() -> None:
    texts = [f"t{i}" for i in range(10)]
    got = batches(texts, 4)
    assert [len(b) for b in got] == [4, 4, 4]
    assert [t for b in got for t in b][:10] == texts  # every sent text, in order, before any repeat
    assert got[-1] == ["t8", "t9", "t0", "t1"]
    assert batches(["only"], 3) == [["only", "only", "only"]]
