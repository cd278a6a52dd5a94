"""The repository passes its own linter (ruff settings in pyproject.toml)."""

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_passes():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
