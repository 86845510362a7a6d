"""pyproject.toml: a library whose runtime needs no test tools, and the same packages as requirements.txt."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_the_readme_installs_the_package_and_requirements_stay_installable_alone():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements.txt -e . && python app.py" in readme
    assert "pip install -r requirements.txt -e . && python -m pytest" in readme
    assert "pip install -r requirements.txt -e . && python -m pytest" in (ROOT / ".ci" / "run").read_text()
    # A Hugging Face Space installs requirements.txt before the repository is there: no local paths in it.
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert not any(line.startswith(("-e", ".", "/")) for line in lines)


@pytest.mark.slow
def test_after_the_install_python_m_lfdm_works_from_any_folder(tmp_path):
    """The editable install the README runs, into a folder of this test's own (no download: setuptools is here)."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--prefix", str(target), "-e", str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    site_packages = next(target.glob("lib/python*/site-packages"))
    script = (
        f"import site, runpy; site.addsitedir({str(site_packages)!r}); runpy.run_module('lfdm', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert done.returncode == 0 and "generate" in done.stdout, done.stderr


def test_the_space_attributes_route_every_binary_and_large_file_through_lfs():
    rules = [line.split()[0] for line in (ROOT / ".gitattributes-space").read_text().splitlines()
             if line and not line.startswith("#") and "filter=lfs" in line]  # fmt: skip
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8000] or len(data) > 10 * 2**20:  # what a Space takes only through LFS
            assert any(fnmatch.fnmatch(path.name, rule) for rule in rules), f"{name} needs an LFS rule"
    assert not (ROOT / ".gitattributes").exists() or "filter=lfs" not in (ROOT / ".gitattributes").read_text(), (
        "LFS rules in this repository's own attributes show every weight file as modified where Git LFS is installed"
    )
