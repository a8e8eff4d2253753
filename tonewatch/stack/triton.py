"""NVIDIA Triton from the nvidia-pytriton wheel, serving the model repository with the python backend."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tonewatch.core.settings import Settings
from tonewatch.stack.procs import StackError, free_port, spawn, stop, wait_ready


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    python_backend: Path
    stub: Path
    libs: Path


@dataclass(frozen=True)
class TritonProcess:
    pid: int
    http_url: str
    grpc_url: str
    metrics_url: str
    log_path: Path


def find_install() -> TritonInstall:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("nvidia-pytriton is not installed: it ships the tritonserver binary")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent.parent / "nvidia_pytriton.libs",
    )
    for path in (install.binary, install.python_backend, install.stub):
        if not path.exists():
            raise StackError(f"{path} is missing from the nvidia-pytriton install (Python {version})")
    return install


def assemble_backends(install: TritonInstall, dest: Path) -> Path:
    """The python backend looks for its stub in its own folder: give it one with ours."""
    python = dest / "python"
    shutil.rmtree(python, ignore_errors=True)
    shutil.copytree(install.python_backend, python)
    shutil.copy2(install.stub, python / "triton_python_backend_stub")
    (python / "triton_python_backend_stub").chmod(0o755)
    return dest


def server_env(install: TritonInstall) -> dict[str, str]:
    """libpython of this interpreter first, else the stub links Debian's; libcudart from the wheel."""
    paths = [str(sysconfig.get_config_var("LIBDIR")), str(install.libs), os.environ.get("LD_LIBRARY_PATH", "")]
    # asks for no bytecode, but the python-backend stub writes __pycache__ into a version folder anyway;
    # the loader pre-compiles model.py so that write does not make Triton re-initialise the version
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(p for p in paths if p), "PYTHONDONTWRITEBYTECODE": "1"}


def _ready(http_url: str) -> bool:
    with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=2) as resp:
        return bool(resp.status == 200)


def start_triton(
    settings: Settings,
    work_dir: Path,
    timeout_s: float = 90.0,
    *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> TritonProcess:
    """Explicit model control: nothing loads until :func:`models.triton_admin.load_model` asks.

    ``extra_args`` go to tritonserver as they are (tests run it with compose's restricted APIs)."""
    install = find_install()
    work_dir = work_dir.resolve()
    backends = assemble_backends(install, work_dir / "backends")
    http, grpc, metrics = http_port or free_port(), grpc_port or free_port(), metrics_port or free_port()
    cmd = [
        str(install.binary), f"--model-repository={settings.triton.model_repository.resolve()}",
        "--model-control-mode=explicit", f"--backend-directory={backends}",
        "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
        f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
        "--allow-metrics=true", "--exit-timeout-secs=10", "--log-verbose=0", *extra_args,
    ]
    log_path = work_dir / "triton.log"
    pid = spawn(cmd, log_path, env=server_env(install))
    http_url = f"127.0.0.1:{http}"
    wait_ready("triton", pid, log_path, lambda: _ready(http_url), timeout_s)
    time.sleep(0.2)
    return TritonProcess(pid, http_url, f"127.0.0.1:{grpc}", f"127.0.0.1:{metrics}", log_path)


def stop_triton(proc: TritonProcess) -> None:
    stop(proc.pid, timeout_s=30)
