"""The demo as a user runs it, and a code change in one stage, through `python -m cli.demo`."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow
MODEL = "breast_cancer"  # datasets/demo.yaml
# A row of the summary table: model, stage, cache, content hash, seconds.
ROW = re.compile(r"^(\w+)\s+(\w+)\s+(hit|miss)\s+(b3:[0-9a-f]+)\s+([0-9.]+)$", re.M)


def demo(cwd: Path, state: Path) -> tuple[dict[str, str], str]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "TIDELINE_HOME": str(state),
           "DAGSTER_HOME": str(state / "dagster"), "TIDELINE_SPEC": "demo"}
    for module in ("cli.setup_state", "cli.demo"):
        proc = subprocess.run([sys.executable, "-m", module], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = ROW.findall(proc.stdout)
    assert {m[0] for m in rows} == {MODEL}, proc.stdout
    return {m[1]: m[2] for m in rows}, proc.stdout


def test_demo_runs_end_to_end_then_hits(tmp_path):
    state = tmp_path / "state"
    first, out = demo(REPO, state)
    assert first == dict.fromkeys(["raw_data", "validated_features", "trained_weights",
                                   "quantized_weights", "model_card"], "miss")
    card = Path(re.search(r"model card: (\S+)", out).group(1))
    assert card == state.resolve() / "model_cards" / MODEL / "card.html"
    assert card.exists() and "ROC" in card.with_suffix(".md").read_text()
    assert "<img" in card.read_text()
    # Every plot card.md names is beside it.
    named = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.with_suffix(".md").read_text())
    assert {"roc.png", "calibration.png"} <= set(named)
    assert all((card.parent / name).is_file() for name in named), named
    assert "deployment: stable v1" in out
    assert re.search(rf"^{MODEL}\s+deployment\s+-\s+deployed v1\s", out, re.M), out
    bundle = Path(re.search(r"^deployment: .*; edge bundle (\S+)", out, re.M).group(1))
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "model.sig",
                                                        "model_int8.onnx"]
    second, _ = demo(REPO, state)
    assert set(second.values()) == {"hit"}
    assert not (REPO / "mlflow.db").exists() and not (REPO / "mlruns").exists()


def test_code_change_recomputes_that_stage_and_downstream_only(tmp_path):
    copy = tmp_path / "repo"
    for name in ("pipelines", "assets", "resources", "jobs", "schedules", "sensors", "cli",
                 "datasets", "serving"):
        shutil.copytree(REPO / name, copy / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("definitions.py", "dagster.yaml"):
        shutil.copy(REPO / name, copy / name)
    state = tmp_path / "state"
    first, _ = demo(copy, state)
    assert set(first.values()) == {"miss"}
    stage = copy / "pipelines" / "stages" / "quantization.py"
    text = stage.read_text()
    assert 'info={"tolerances":' in text
    stage.write_text(text.replace('info={"tolerances":', 'info={"format": 2, "tolerances":'))
    second, _ = demo(copy, state)
    assert second == {"raw_data": "hit", "validated_features": "hit", "trained_weights": "hit",
                      "quantized_weights": "miss", "model_card": "miss"}


def test_reproduce_rebuilds_every_stage_of_a_version(tmp_path):
    state = tmp_path / "state"
    rows, _ = demo(REPO, state)
    assert rows["trained_weights"] == "miss"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(state),
           "DAGSTER_HOME": str(state / "dagster"), "TIDELINE_SPEC": "demo"}
    proc = subprocess.run([sys.executable, "-m", "cli.reproduce", "--version", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for asset in ("validated_features", "trained_weights", "quantized_weights", "model_card"):
        assert f"{asset}: matches" in proc.stdout, proc.stdout
    assert "reproduced 4 of 4 stages" in proc.stdout
    # A setting changed since: the stage it shapes differs, named with its first difference;
    # each stage is rebuilt from recorded inputs, so the card downstream still matches.
    spec = yaml.safe_load((REPO / "datasets" / "demo.yaml").read_text())
    spec["quantization"] = {**spec.get("quantization", {}), "calibration_rows": 37}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "cli.reproduce", "--version", "1"], cwd=REPO,
                          env=env | {"TIDELINE_SPEC": str(changed)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "quantized_weights: DIFFERS" in proc.stdout and "first difference: file model_int8" \
        in proc.stdout, proc.stdout
    assert "model_card: matches" in proc.stdout and "reproduced 3 of 4 stages" in proc.stdout
