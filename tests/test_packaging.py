"""pyproject.toml: a library whose runtime needs no test tools, and the same packages as requirements.txt."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def names(requirements) -> set[str]:
    return {re.split(r"[<>=\[ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-") for line in requirements}


def test_runtime_dependencies_hold_no_test_or_browser_tool():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not names(project["dependencies"]) & {"pytest", "pytest-timeout", "playwright", "gradio", "accelerate"}
    assert set(project["optional-dependencies"]) == {"app", "train", "test", "text"}


def test_requirements_pin_exactly_the_packages_pyproject_lists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = names(project["dependencies"])
    for extra, requirements in project["optional-dependencies"].items():
        if extra != "text":  # transformers: only for `embed-labels`, not installed by requirements.txt
            listed |= names(r for r in requirements if not r.startswith("lfdm["))
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lines), "requirements.txt pins every package"
    assert names(lines) == listed
