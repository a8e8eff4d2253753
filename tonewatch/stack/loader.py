"""Loading models into Triton explicitly, with the local Python env injected at load time.

The committed config.pbtxt stays production-clean (the Triton image has the deps installed);
locally, EXECUTION_ENV_PATH is added through Triton's load API as a config override.
"""

from __future__ import annotations

import time
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from tonewatch.settings import Settings
from tonewatch.stack.procs import StackError


def parse_model_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt the way Triton does; raises on any unknown field or syntax error."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def load_config(settings: Settings, name: str) -> str:
    """The JSON config override for a load: the committed config plus local-only parameters."""
    cfg = parse_model_config(settings.model_repository / name / "config.pbtxt")
    if settings.model_env_path is not None:
        cfg.parameters["EXECUTION_ENV_PATH"].string_value = str(settings.model_env_path.resolve())
    if settings.triton_cpu_threads:
        cfg.parameters["threads"].string_value = str(settings.triton_cpu_threads)
    return json_format.MessageToJson(cfg, preserving_proto_field_name=True)


def load_model(settings: Settings, name: str, timeout_s: float = 300.0) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(settings.triton_http_url, network_timeout=timeout_s,
                                              connection_timeout=timeout_s)
    try:
        try:
            client.load_model(name, config=load_config(settings, name))
        except InferenceServerException as exc:
            raise StackError(f"Triton failed to load '{name}': {exc.message()}") from exc
        deadline = time.monotonic() + timeout_s
        while not client.is_model_ready(name):
            if time.monotonic() > deadline:
                raise StackError(f"model '{name}' not ready after {timeout_s:.0f}s")
            time.sleep(0.5)
    finally:
        client.close()


def unload_model(settings: Settings, name: str) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(settings.triton_http_url)
    try:
        client.unload_model(name)
    finally:
        client.close()
