"""The stack's building blocks alone, without the repo's models: a broker that round-trips a message,
and a Triton that loads a python-backend model in this interpreter's env and answers over gRPC."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from models.triton_admin import load_model, unload_model
from tonewatch.core.settings import Settings
from tonewatch.stack.kafka import start_kafka, stop_kafka
from tonewatch.stack.procs import alive
from tonewatch.stack.triton import start_triton, stop_triton

pytestmark = pytest.mark.integration

CONFIG = """name: "length"
backend: "python"
max_batch_size: 8
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "LEN" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

MODEL = '''import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            lengths = np.array([[len(row[0])] for row in text], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LEN", lengths)]))
        return responses
'''


def test_kafka_round_trips_a_message(tmp_path: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    settings = Settings().updated(run_dir=tmp_path / "run")
    kafka = start_kafka(settings, tmp_path / "kafka")
    try:
        assert kafka.bootstrap.startswith("127.0.0.1:")
        topic = f"smoke-{uuid.uuid4().hex[:8]}"
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
        producer.send(topic, b"hello").get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=30000)
        try:
            values = [next(consumer).value]
        finally:
            consumer.close()
        assert values == [b"hello"]
    finally:
        stop_kafka(kafka)
    assert not alive(kafka.pid)


def test_triton_serves_a_python_model_in_this_env(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    repo = tmp_path / "repo"
    (repo / "length" / "1").mkdir(parents=True)
    (repo / "length" / "config.pbtxt").write_text(CONFIG)
    (repo / "length" / "1" / "model.py").write_text(MODEL)
    settings = Settings().updated(run_dir=tmp_path / "run", triton__model_repository=repo,
                                  triton__model_env_path=Path(sys.prefix))
    triton = start_triton(settings, tmp_path / "triton")
    try:
        local = settings.updated(triton__http_url=triton.http_url, triton__grpc_url=triton.grpc_url)
        load_model(local, "length", timeout_s=120)
        assert "Using Python execution env" in triton.log_path.read_text(errors="replace")
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            text = np.array([[b"abc"], ["héllo".encode()]], dtype=object)
            inp = grpcclient.InferInput("TEXT", list(text.shape), "BYTES")
            inp.set_data_from_numpy(text)
            result = client.infer("length", [inp], outputs=[grpcclient.InferRequestedOutput("LEN")])
            out = result.as_numpy("LEN")
        finally:
            client.close()
        assert out is not None and out.dtype == np.float32
        assert out.reshape(-1).tolist() == [3.0, 6.0]  # bytes, not characters
        unload_model(local, "length")
    finally:
        stop_triton(triton)
    assert not alive(triton.pid)
