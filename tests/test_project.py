"""The project's own promises: pinned environments that agree, and CI running the README's test command."""
import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


def test_every_dependency_is_pinned_exactly():
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9][0-9.]*", pin) for pin in pyproject_pins())


def test_environment_yml_has_the_same_pins_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    assert sorted(p for p in pip if "==" in p) == sorted(pyproject_pins())


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme.split("\n## ")[0]  # among the README's first lines
    assert (ROOT / ".ci/run").read_text().strip().splitlines()[-1] == "make test"


def test_every_third_party_module_qcslib_imports_is_declared():
    """facenet-pytorch is the one exception: the Makefile installs it with --no-deps (its metadata pins an old torch)."""
    modules = set()
    for path in (ROOT / "qcslib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    third_party = {m for m in modules if m not in sys.stdlib_module_names and m != "qcslib"}
    owners = metadata.packages_distributions()
    needed = {re.sub(r"[-_.]+", "-", d).lower() for m in third_party for d in owners.get(m, [m])}
    declared = {re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower() for pin in pyproject_pins()}
    assert needed - declared == {"facenet-pytorch"}
    assert "facenet-pytorch==2.6.0" in (ROOT / "Makefile").read_text()
