"""The demo's whole output as a user reads it: a line per stage, then the table, in few lines.

Dagster's event stream and the run's logging go to the log file the output names.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.catalog import CHAIN
from tests.conftest import REPO

pytestmark = pytest.mark.slow
MODEL = "breast_cancer"  # datasets/demo.yaml


def test_demo_prints_a_line_per_stage_then_the_table_and_logs_the_rest(tmp_path):
    spec = yaml.safe_load((REPO / "datasets" / "demo.yaml").read_text())
    spec["training"] |= {"epochs": 4, "patience": 2}
    spec["tuning"] |= {"n_trials": 2}
    spec["tuning"]["search_space"]["epochs"] = {"low": 2, "high": 4}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(state),
           "DAGSTER_HOME": str(state / "dagster"), "TIDELINE_SPEC": str(path), "VERBOSE": ""}
    # What `make demo` runs (the terminal gets both streams), with stdout a pipe: plain lines.
    out = ""
    for module in ("cli.setup_state", "cli.demo"):
        proc = subprocess.run([sys.executable, "-m", module], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        assert proc.returncode == 0, out + proc.stdout
        out += proc.stdout
    lines = out.splitlines()
    assert len(lines) <= 40, out
    # The table is last: a row per stage and the run's total.
    header, *rows = lines[-len(CHAIN) - 2:]
    assert header.split()[:3] == ["model", "stage", "cache"], out
    assert [row.split()[:2] for row in rows] == [[MODEL, stage] for stage in CHAIN] + [
        [MODEL, "total"]], out
    # While it ran: the stage's line when it ended (cache, what it made, seconds).
    for stage in CHAIN[:-1]:
        assert re.search(rf"^  {MODEL}/{stage}: miss, .*, [0-9.]+ s$", out, re.M), out
    assert re.search(rf"^  {MODEL}/trained_weights: miss, 2 trials \(\d pruned\), \d epochs",
                     out, re.M), out
    assert re.search(rf"^  {MODEL}/deployment: deployed v1 as stable, ", out, re.M), out
    assert "vnone" not in out and " - DEBUG - " not in out and "Traceback" not in out
    # Dagster's event stream is in the log file the output names, under the state folder.
    log = Path(re.search(r"^Dagster's log of the run: (\S+)$", out, re.M)[1])
    assert log.parent == state.resolve() / "logs"
    text = log.read_text()
    assert " - DEBUG - " in text and "STEP_START" in text and "RUN_SUCCESS" in text
    assert "epoch 1/" in text  # the stages' own messages, which the terminal summarised
