"""The committed model.py against a stand-in for Triton's ``triton_python_backend_utils``.

The served path through the real Triton is in tests/integration; this covers the adapter's
contract quickly: one response per request, in order, and a bad request fails alone.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.serving import Classifier

REPO = Path(__file__).resolve().parents[2]


@dataclass
class _Tensor:
    name: str
    data: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.data


@dataclass
class _Response:
    output_tensors: list[_Tensor] = field(default_factory=list)
    error: Any = None


@dataclass
class _Request:
    inputs: dict[str, _Tensor]


def _fake_backend_utils() -> types.ModuleType:
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = _Tensor  # type: ignore[attr-defined]
    mod.InferenceResponse = _Response  # type: ignore[attr-defined]
    mod.TritonError = lambda msg: msg  # type: ignore[attr-defined]
    mod.get_input_tensor_by_name = lambda req, name: req.inputs[name]  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> Any:
    version_dir = REPO / "triton_repo" / "sentiment" / "1"
    if not (version_dir / "artifact").is_dir():
        pytest.fail("models v1 missing: run `make setup` (tonewatch models bootstrap) first")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_backend_utils())
    spec = importlib.util.spec_from_file_location("served_model", version_dir / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = {"parameters": {"threads": {"string_value": "1"}}}
    model.initialize({"model_config": json.dumps(config), "model_instance_kind": "CPU",
                      "model_instance_device_id": "0", "model_repository": str(version_dir.parent),
                      "model_version": "1"})
    return model


def _request(*texts: bytes) -> _Request:
    return _Request({"TEXT": _Tensor("TEXT", np.array([[t] for t in texts], dtype=np.object_))})


def test_one_response_per_request_in_order_and_a_bad_request_fails_alone(adapter: Any) -> None:
    texts = [b"Shares plunge after profit warning", b"Company reports record revenue", b"Fed holds rates"]
    responses = adapter.execute([_request(texts[0], texts[1]), _request(b"\xff\xfe bad"), _request(texts[2])])

    assert len(responses) == 3
    assert responses[1].error is not None and "UTF-8" in responses[1].error
    first, last = responses[0].output_tensors[0].data, responses[2].output_tensors[0].data
    assert first.shape == (2, 3) and last.shape == (1, 3)
    assert responses[0].error is None and responses[2].error is None
    np.testing.assert_allclose(np.concatenate([first, last]).sum(axis=1), 1.0, rtol=1e-5)
    direct = Classifier(REPO / "triton_repo" / "sentiment" / "1").predict_proba([t.decode() for t in texts])
    np.testing.assert_allclose(np.concatenate([first, last]), direct, atol=1e-5)


def test_an_empty_batch_of_requests_is_answered_with_nothing(adapter: Any) -> None:
    assert adapter.execute([]) == []
