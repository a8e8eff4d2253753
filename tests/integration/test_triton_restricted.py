"""A real tritonserver with compose's restricted-API flags: without the key nothing loads, the loader with it does.

The flags are read from docker-compose.yml, with the key the compose file takes from the environment put in,
so this checks the flags compose runs (Triton refuses a malformed one at start-up).
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from pydantic import SecretStr
from tritonclient.utils import InferenceServerException

from models.triton_admin import ADMIN_HEADER, load_model, loaded_versions, unload_model
from tonewatch.core.errors import TritonError
from tonewatch.core.settings import Settings
from tonewatch.perf.trivial import TRIVIAL_REPO
from tonewatch.stack.triton import start_triton, stop_triton

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEY = secrets.token_hex(16)


def compose_flags(key: str) -> tuple[str, ...]:
    """Triton's restricted-API flags from docker-compose.yml, with ``key`` for the environment variable."""
    command = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["triton"]["command"]
    flags = [c for c in command if c.startswith(("--http-restricted-api=", "--grpc-restricted-protocol="))]
    assert len(flags) == 2, command
    return tuple(re.sub(r"\$\{TONEWATCH_TRITON__ADMIN_KEY:\?[^}]*\}", key, f) for f in flags)


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a restricted Triton serving the trivial models; no key held."""
    tmp = tmp_path_factory.mktemp("restricted-triton")
    base = Settings().updated(run_dir=tmp / "run", triton__model_repository=TRIVIAL_REPO,
                              triton__model_env_path=Path(sys.prefix))
    proc = start_triton(base, tmp / "triton", extra_args=compose_flags(KEY))
    try:
        yield base.updated(triton__http_url=proc.http_url, triton__grpc_url=proc.grpc_url,
                           triton__metrics_url=proc.metrics_url)
    finally:
        stop_triton(proc)


def _grpc_refused(call: object) -> str:
    with pytest.raises(InferenceServerException) as refused:
        call()  # type: ignore[operator]
    return str(refused.value)


def test_loading_without_the_key_is_refused(triton: Settings) -> None:
    for settings in (triton, triton.updated(triton__admin_key=SecretStr("not-the-key"))):
        with pytest.raises(TritonError, match=f"restricted, expecting header '{ADMIN_HEADER}'") as refused:
            load_model(settings, "sentiment", timeout_s=30)
        assert KEY not in str(refused.value)
    http = httpclient.InferenceServerClient(triton.triton.http_url)
    grpc = grpcclient.InferenceServerClient(triton.triton.grpc_url)
    try:
        assert not http.is_model_ready("sentiment")
        with pytest.raises(InferenceServerException):
            http.get_system_shared_memory_status()  # shared memory is behind the key too
        _grpc_refused(lambda: grpc.load_model("topic"))
        _grpc_refused(lambda: grpc.get_model_repository_index())
        # the gRPC header Triton checks is its prefix plus the HTTP one
        grpc.get_model_repository_index(headers={f"triton-grpc-protocol-{ADMIN_HEADER}": KEY})
        assert not grpc.is_model_ready("topic")
    finally:
        http.close()
        grpc.close()


def test_the_loader_with_the_key_loads_and_the_worker_needs_none(triton: Settings) -> None:
    loader = triton.updated(triton__admin_key=SecretStr(KEY))
    load_model(loader, "sentiment", timeout_s=60)
    assert loaded_versions(loader, "sentiment") == {"1": "READY"}
    # what the worker uses stays open: readiness, metadata, the model config
    grpc = grpcclient.InferenceServerClient(triton.triton.grpc_url)
    try:
        assert grpc.is_model_ready("sentiment")
        assert grpc.get_model_metadata("sentiment").name == "sentiment"
        assert grpc.get_model_config("sentiment").config.name == "sentiment"
    finally:
        grpc.close()
    with pytest.raises(InferenceServerException):
        unload_model(triton, "sentiment")  # nor may anyone else unload it
    unload_model(loader, "sentiment")
