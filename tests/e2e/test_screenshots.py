"""`python -m bench.screenshots` on a fresh state: the demo chain, a drift report, the PNGs.

Needs headless Chromium (`make chromium`); skipped where it is not installed.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None,
                                 reason="headless Chromium is not installed (make chromium)")]

MODEL = "breast_cancer"  # datasets/demo.yaml
CORE = ("asset_graph", "model_card", "deploy_gate", "drift_report")


def test_screenshots_of_a_fresh_state(tmp_path):
    from PIL import Image

    state, out = tmp_path / "state", tmp_path / "shots"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_SPEC": "demo"}
    env.pop("TIDELINE_MODEL", None)
    proc = subprocess.run([sys.executable, "-m", "bench.screenshots", "--out", str(out),
                           "--state", str(state)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "running the demo chain" in proc.stdout
    printed = {Path(line.split()[0]).stem for line in proc.stdout.splitlines()
               if line.startswith(str(out))}
    assert set(CORE) <= printed
    assert printed == {p.stem for p in out.glob("*.png")}
    for name in printed:
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and image.width == 1600 and image.height >= 1200
            # A rendered page (text, graph, tables) has thousands of colours; a blank or
            # loading page a handful.
            assert image.convert("RGB").getcolors(1000) is None, name
    # The card's Markdown was there to open; the drift report was made from a batch the
    # script wrote into the model's production store.
    assert "model_card_markdown" in printed
    batches = list((state / "production" / MODEL / "batches").glob("screenshots-*.parquet"))
    assert len(batches) == 1

    again = subprocess.run([sys.executable, "-m", "bench.screenshots", "--out", str(out),
                            "--state", str(state)], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "running the demo chain" not in again.stdout
    assert "drifted production batch" not in again.stdout
