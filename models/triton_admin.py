"""The Triton admin client: loading and unloading model versions explicitly, and the production record.

Used by the local stack, rollout and publishing alike; the local Python env is injected at load time.

The committed config.pbtxt stays production-clean (the Triton image has the deps installed);
locally, EXECUTION_ENV_PATH is added through Triton's load API as a config override.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from tonewatch.core.errors import TritonError
from tonewatch.core.sections import TritonSettings
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
# the header compose's Triton checks on its restricted APIs (--http-restricted-api=...:<header>=<key>)
ADMIN_HEADER = "tonewatch-admin-key"


def admin_headers(triton: TritonSettings) -> dict[str, str] | None:
    """The restricted-API header, when this process holds the key; unwrapped only here."""
    return None if triton.admin_key is None else {ADMIN_HEADER: triton.admin_key.get_secret_value()}


def parse_model_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt the way Triton does; raises on any unknown field or syntax error."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def load_config(settings: Settings, name: str, versions: list[int] | None = None) -> str:
    """The JSON config override for a load: the committed config plus local-only parameters.

    ``versions`` pins exactly those versions (production beside a candidate); Triton loads the new
    ones while the others keep serving, and unloads any version left out.
    """
    cfg = parse_model_config(settings.triton.model_repository / name / "config.pbtxt")
    if versions:
        cfg.version_policy.specific.versions[:] = sorted(set(versions))
    if settings.triton.model_env_path is not None:
        cfg.parameters["EXECUTION_ENV_PATH"].string_value = str(settings.triton.model_env_path.resolve())
    if settings.triton.cpu_threads:
        cfg.parameters["threads"].string_value = str(settings.triton.cpu_threads)
    if settings.triton.cpu_instances:
        del cfg.instance_group[:]
        cfg.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=settings.triton.cpu_instances)
    return json_format.MessageToJson(cfg, preserving_proto_field_name=True)


def production_file(settings: Settings) -> Path:
    return settings.run_dir / "models.json"


def recorded_production(settings: Settings, name: str) -> int | None:
    """The production version the last promote/rollback recorded for this stack, if any."""
    path = production_file(settings)
    try:
        value = json.loads(path.read_text()).get(name) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    return int(value) if isinstance(value, int) else None


def record_production(settings: Settings, name: str, version: int) -> None:
    path = production_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.is_file() else {}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**current, name: version}, indent=2))
    os.replace(tmp, path)


def precompile(settings: Settings, name: str, versions: list[int]) -> None:
    """Write each version's model.py bytecode before Triton's first load of it, if it has none yet.

    Otherwise the stub's ``__pycache__`` makes Triton re-initialise the version on its next load
    (docs/decisions/2026-12-07-rollout-order.md). Only a cost saving: a folder that cannot be written is
    left to the stub.
    """
    import importlib.util
    import py_compile

    for version in versions:
        source = settings.triton.model_repository / name / str(version) / "model.py"
        cache = Path(importlib.util.cache_from_source(str(source)))
        if source.is_file() and not cache.exists():
            try:
                py_compile.compile(str(source), cfile=str(cache), doraise=True)
            except (OSError, py_compile.PyCompileError) as exc:
                log.warning("could not precompile %s (Triton will re-initialise it once): %s", source, exc)


def startup_versions(settings: Settings, name: str) -> list[int]:
    """The recorded production version if there is one (a rolled-back newer version on disk must not come
    back on restart), else the newest version that is not an experiment trained on ``../shared`` data."""
    from models.artifact import experiment_only, version_numbers

    recorded = recorded_production(settings, name)
    if recorded is not None:
        return [recorded]
    repo = settings.triton.model_repository
    newest = next((v for v in reversed(version_numbers(repo, name)) if not experiment_only(repo / name / str(v))), None)
    return [] if newest is None else [newest]


def load_model(settings: Settings, name: str, timeout_s: float = 300.0, versions: list[int] | None = None) -> None:
    """Load (or reload with a new version set) and wait until every asked version is ready.

    Without ``versions``, :func:`startup_versions`.
    """
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    if versions is None:  # always a specific policy: changing its shape later makes Triton reload all versions
        versions = startup_versions(settings, name) or None

    precompile(settings, name, versions or [])
    client = httpclient.InferenceServerClient(settings.triton.http_url, network_timeout=timeout_s,
                                              connection_timeout=timeout_s)
    try:
        try:
            client.load_model(name, headers=admin_headers(settings.triton),
                              config=load_config(settings, name, versions))
        except InferenceServerException as exc:
            raise TritonError(f"Triton failed to load '{name}' {versions or ''}: {exc.message()}") from exc
        deadline = time.monotonic() + timeout_s
        while not all(client.is_model_ready(name, v) for v in ([str(v) for v in versions] if versions else [""])):
            if time.monotonic() > deadline:
                raise TritonError(f"model '{name}' not ready after {timeout_s:.0f}s")
            time.sleep(0.5)
    finally:
        client.close()


def unload_model(settings: Settings, name: str) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(settings.triton.http_url)
    try:
        client.unload_model(name, headers=admin_headers(settings.triton))
    finally:
        client.close()


def loaded_versions(settings: Settings, name: str) -> dict[str, str]:
    """Version -> state (READY, UNAVAILABLE...) of one model, from Triton's repository index."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(settings.triton.http_url)
    try:
        index = client.get_model_repository_index(headers=admin_headers(settings.triton))
    finally:
        client.close()
    return {str(m["version"]): str(m.get("state", "")) for m in index if m.get("name") == name and m.get("version")}
