"""The set-up promises: conda file in sync with pyproject, CI runs the README's command, ruff clean."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = meta["optional-dependencies"]
    reqs = set(meta["dependencies"]) | set(extras["cpu"]) | set(extras["test"])
    torch_pin = {r for r in reqs if r.startswith("torch==")}
    return {r for r in reqs if not (r.startswith("torch>=") and torch_pin)}


def _environment_pip_lines() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    return [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]


def test_environment_yml_matches_pyproject():
    requirements = {line for line in _environment_pip_lines() if not line.startswith("-")}
    assert requirements == _pyproject_requirements()


def test_environment_yml_takes_torch_from_the_readme_index():
    options = [line for line in _environment_pip_lines() if line.startswith("-")]
    index = re.search(r"--extra-index-url \S+", _readme_command("run the main job"))
    assert index and options == [index[0], "-e ."]  # the CPU build of torch, as pip gets it in the README


def _readme_command(marker: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("# " + marker))
    return lines[i + 1].strip()


def test_ci_runs_exactly_the_readme_test_command_then_ruff():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    assert commands[0] == _readme_command("run the tests")
    assert commands[1].startswith(".venv/bin/ruff check icalign_nb tests")
    main_job = _readme_command("run the main job")
    assert main_job.split("&&")[:-1] == commands[0].replace("'.[cpu,test]'", "'.[cpu]'").split("&&")[:-1]
    assert main_job.endswith("icalign notebooks run")
