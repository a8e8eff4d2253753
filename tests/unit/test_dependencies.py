"""Dependencies: every third-party import is declared and capped, and the lock CI installs agrees with both."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("tonewatch", "streams", "models")
LOCK = REPO / "requirements" / "lock.txt"
# provided by Triton's python backend inside the server, never by a wheel
RUNTIME_PROVIDED = {"triton_python_backend_utils"}
# pydantic pins its core to one exact version; declaring the core too would only fight that pin
BUNDLED_WITH = {"pydantic-core": "pydantic"}
# dev tools (pytest, ruff...) are not installed where the code runs, so code may not rely on them
RUNTIME_EXTRAS = ("models", "local", "console")
UPPER_BOUND_OPERATORS = {"<", "<=", "==", "===", "~="}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirements(extras: tuple[str, ...] | None = None) -> list[Requirement]:
    """The base dependencies plus the named extras (all extras when ``extras`` is None)."""
    project = _project()
    optional = project["optional-dependencies"]
    chosen = optional if extras is None else {name: optional[name] for name in extras}
    lines = project["dependencies"] + [line for group in chosen.values() for line in group]
    return [Requirement(line) for line in lines]


def _imported_top_levels() -> dict[str, set[str]]:
    """Absolute imports anywhere in the code, lazy ones included: top-level module -> files importing it."""
    found: dict[str, set[str]] = {}
    for source in SOURCES:
        for path in (REPO / source).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def _third_party(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    skip = set(sys.stdlib_module_names) | set(SOURCES) | RUNTIME_PROVIDED | {"__future__"}
    return {name: files for name, files in modules.items() if name not in skip}


def test_every_third_party_import_is_declared_for_runtime() -> None:
    declared = {canonicalize_name(req.name) for req in _requirements(RUNTIME_EXTRAS)}
    providers = packages_distributions()
    missing = []
    for module, files in sorted(_third_party(_imported_top_levels()).items()):
        dists = {canonicalize_name(dist) for dist in providers.get(module, [])}
        if not dists & declared and not {BUNDLED_WITH.get(dist) for dist in dists} & declared:
            missing.append(f"{module} ({', '.join(sorted(dists)) or 'not installed'}) in {sorted(files)[0]}")
    assert not missing, "imported but not declared in dependencies or the models/local extras: " + "; ".join(missing)


def test_the_scan_sees_imports_it_must_declare() -> None:
    # guards the test above against a scan that finds nothing (it would then pass vacuously)
    third_party = _third_party(_imported_top_levels())
    assert {"faust", "kafka", "tritonclient", "torch", "pydantic"} <= set(third_party)
    assert "json" not in third_party and "tonewatch" not in third_party


def test_every_declared_dependency_has_an_upper_bound() -> None:
    unbounded = [str(req) for req in _requirements()
                 if not {spec.operator for spec in req.specifier} & UPPER_BOUND_OPERATORS]
    assert not unbounded, f"declare the newest tested version as an upper bound: {unbounded}"


def test_the_installed_versions_are_inside_the_declared_ranges() -> None:
    outside = []
    for req in _requirements():
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            outside.append(f"{req.name} is not installed (make install)")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            outside.append(f"{req.name}=={installed} is outside {req.specifier}")
    assert not outside, outside


def _lock_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_the_lock_pins_every_declared_dependency_inside_its_range() -> None:
    # a range changed in pyproject without `make lock` leaves CI on versions the project no longer declares
    assert LOCK.is_file(), "requirements/lock.txt is missing: run make lock"
    pins = _lock_pins()
    wrong = [f"{req.name}: {pins.get(canonicalize_name(req.name), 'not locked')} vs {req.specifier}"
             for req in _requirements()
             if not req.specifier.contains(pins.get(canonicalize_name(req.name), "0.0.0.dev0"), prereleases=True)]
    assert not wrong, f"run make lock: {wrong}"


def test_make_install_uses_the_lock_as_constraints() -> None:
    makefile = (REPO / "Makefile").read_text()
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    assert stamp_rule and "requirements/lock.txt" in stamp_rule.group(1), "a changed lock must reinstall"
    assert re.search(r"pip install .*-c requirements/lock\.txt .*-e '\.\[models,local,console,dev\]'", makefile)


@pytest.mark.parametrize("dockerfile", ["docker/triton.Dockerfile"])
def test_the_triton_image_has_the_cve_2025_23319_fix(dockerfile: str) -> None:
    # Triton 25.07 fixes CVE-2025-23319/23320/23334 in the python backend; compose builds this image
    match = re.search(r"^FROM nvcr\.io/nvidia/tritonserver:(\d+)\.(\d+)-py3$", (REPO / dockerfile).read_text(),
                      re.MULTILINE)
    assert match, "the Triton base image must be a fixed YY.MM release tag, not latest or a digest-less floating tag"
    assert (int(match.group(1)), int(match.group(2))) >= (25, 7)


def test_every_file_the_code_reads_at_run_time_goes_into_the_wheel() -> None:
    """Images install the project without -e: a migration or template missing from package-data would be
    missing there (the sink could not create its tables, the console could not render a page)."""
    from fnmatch import fnmatch

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-data", {})
    missing = []
    for source in SOURCES:
        for path in (REPO / source).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            package = next((p for p in sorted(data, key=len, reverse=True)
                            if path.relative_to(REPO).as_posix().startswith(p.replace(".", "/") + "/")), None)
            inside = path.relative_to(REPO / package.replace(".", "/")).as_posix() if package else ""
            if package is None or not any(fnmatch(inside, pattern) for pattern in data[package]):
                missing.append(str(path.relative_to(REPO)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
