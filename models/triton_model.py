"""Thin Triton python-backend adapter; copied verbatim into every ``triton_repo/<model>/<N>/model.py``.

All logic lives in :mod:`models.serving`: this file only moves tensors.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend

from models.serving import Classifier


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        gpu = args["model_instance_kind"] == "GPU"
        device = f"cuda:{args['model_instance_device_id']}" if gpu else "cpu"
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.model = Classifier(version_dir, device, threads=int(params.get("threads", "0")) or None,
                                runtime=params.get("runtime", "auto"))

    def execute(self, requests):
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        errors = {}
        for i, request in enumerate(requests):
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            try:
                batch = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw]
            except UnicodeDecodeError as exc:
                errors[i] = pb_utils.TritonError(f"TEXT is not UTF-8: {exc}")
                batch = []
            spans.append((len(texts), len(texts) + len(batch)))
            texts.extend(batch)
        probs = self.model.predict_proba(texts)  # one forward pass for every request
        responses = []
        for i, (lo, hi) in enumerate(spans):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(error=errors[i]))
            else:
                out = pb_utils.Tensor("PROBS", np.ascontiguousarray(probs[lo:hi]))
                responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
