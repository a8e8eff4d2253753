"""Trivial python-backend model for pipeline-only benchmarks and fault tests: no encoder.

Fixed probabilities: the first label wins for texts with a negative keyword, the last label
otherwise, so trend windows and alerts still happen while inference costs next to nothing.
The same file serves every label set (read from the config's ``labels`` parameter).
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's python backend

NEGATIVE = (b"falls", b"plunge", b"crash", b"fraud", b"lawsuit", b"recall", b"loss", b"slump")


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        n = len(json.loads(cfg["parameters"]["labels"]["string_value"]))
        self.neg = np.full(n, 0.1 / max(n - 1, 1), dtype=np.float32)
        self.neg[0] = 0.9
        self.other = self.neg[::-1].copy()

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            probs = np.stack([self.neg if any(k in t.lower() for k in NEGATIVE) else self.other for t in raw])
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("PROBS", probs)]))
        return responses
