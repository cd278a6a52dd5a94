"""The repository passes its own linters (ruff and import-linter settings in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
PACKAGES = ("pipelines", "assets", "resources", "jobs", "schedules", "sensors", "serving", "cli",
            "bench")


def test_ruff_passes():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--no-logo", "--no-cache"], cwd=root,
                          capture_output=True, text=True, env={"PYTHONPATH": str(root)},
                          timeout=120)


def test_the_layering_contracts_hold():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(("module", "body", "broken"), [
    # An import inside a function counts: pipelines stays free of Dagster everywhere.
    ("pipelines/probe.py", "def f():\n    import dagster\n", "pipelines.probe -> dagster"),
    # An op that reaches into a command.
    ("jobs/probe.py", "def f():\n    from cli.gc import main\n", "jobs.probe -> cli.gc"),
    ("serving/probe.py", "from resources.store import ArtifactStoreResource\n",
     "serving.probe -> resources.store"),
    ("sensors/probe.py", "def f():\n    import definitions\n", "sensors.probe -> definitions"),
])
def test_an_import_across_the_layers_breaks_a_contract(tmp_path, module, body, broken):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    assert lint_imports(tmp_path).returncode == 0, "the copy must pass before the change"
    (tmp_path / module).write_text(body)
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert broken in proc.stdout and "1 broken" in proc.stdout, proc.stdout
