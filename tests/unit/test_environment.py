"""The pinned environment: environment.yml (conda) must pin the same versions as requirements.lock."""


import pytest
import yaml

from tests.support import ROOT

pytestmark = pytest.mark.unit



def _lock():
    out = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            k, v = line.split("==")
            out[k.strip().lower().replace("_", "-")] = v.strip()
    return out


def test_environment_yml_agrees_with_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    lock = _lock()
    assert pip, "environment.yml has no pinned pip packages"
    for spec in pip:
        name, ver = spec.split("==")
        key = name.lower().replace("_", "-")
        assert key in lock, f"{name} pinned in environment.yml but not in requirements.lock"
        assert lock[key] == ver, f"{name}: environment.yml {ver} != requirements.lock {lock[key]}"


def test_direct_dependencies_are_locked():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = _lock()
    for d in deps:
        name = d.split(">")[0].split("=")[0].split("<")[0].strip().lower().replace("_", "-")
        assert name in lock, f"{name} is a dependency but not in requirements.lock"


def test_every_direct_and_test_dependency_is_pinned_for_conda():
    """CI once failed because ruff was declared but never locked: each declared package must be in both pins."""
    import re
    import tomllib

    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = {s.split("==")[0].lower().replace("_", "-") for s in next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))}
    lock = _lock()
    for d in py["dependencies"] + py["optional-dependencies"]["test"]:
        name = re.split(r"[<>=\[ ]", d)[0].strip().lower().replace("_", "-")
        assert name in lock, f"{name} is declared in pyproject.toml but not in requirements.lock"
        assert name in pip, f"{name} is declared in pyproject.toml but not in environment.yml"


def test_installed_versions_match_lock():
    from importlib.metadata import version

    lock = _lock()
    for name in ("pandas", "statsmodels", "geopandas", "duckdb", "papermill", "numpy"):
        assert version(name) == lock[name], f"{name} installed {version(name)} but lock says {lock[name]}"
