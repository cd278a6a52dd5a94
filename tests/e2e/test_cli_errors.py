"""A refused run as a user sees it in the terminal: progress, then one line saying what to fix."""

import os
import subprocess
import sys

import yaml

from tests.conftest import REPO


def _demo(tmp_path, spec: dict, verbose: bool = False) -> subprocess.CompletedProcess:
    state = tmp_path / "state"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(state),
           "DAGSTER_HOME": str(state / "dagster"), "TIDELINE_SPEC": str(path),
           "VERBOSE": "1" if verbose else ""}
    subprocess.run([sys.executable, "-m", "cli.setup_state"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    return subprocess.run([sys.executable, "-m", "cli.demo"], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


def _spec(**source) -> dict:
    spec = yaml.safe_load((REPO / "datasets" / "demo.yaml").read_text())
    spec["source"] |= source
    return spec


def _after_progress(out: str) -> list[str]:
    lines = [line for line in out.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("running breast_cancer_training_job"))
    return [line for line in lines[start + 1:] if not line.startswith("  ")]


def test_a_directory_as_source_ends_in_one_line_naming_it(tmp_path):
    folder = tmp_path / "data_folder"
    folder.mkdir()
    proc = _demo(tmp_path, _spec(path=str(folder)))
    assert proc.returncode == 2, proc.stdout
    tail = _after_progress(proc.stdout)
    assert len(tail) <= 10, proc.stdout
    assert tail[-1].startswith("error: ") and str(folder) in tail[-1], proc.stdout
    assert "Traceback" not in proc.stdout and "DagsterExecutionStepExecutionError" not in (
        proc.stdout)
    # The stack trace is kept in the log file the output names.
    log = next(line.split(": ", 1)[1] for line in tail if line.startswith("details: "))
    assert "Traceback" in open(log).read() or "Stack Trace" in open(log).read()


def test_a_spec_mistake_is_one_line_naming_the_field(tmp_path):
    spec = _spec()
    spec["training"]["lerning_rate"] = 0.01
    proc = _demo(tmp_path, spec)
    assert proc.returncode == 2, proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "training.lerning_rate" in lines[-1], proc.stdout
    assert "spec.yaml" in lines[-1]
    assert "Traceback" not in proc.stdout


def test_verbose_shows_dagster_log_on_the_terminal(tmp_path):
    folder = tmp_path / "data_folder"
    folder.mkdir()
    proc = _demo(tmp_path, _spec(path=str(folder)), verbose=True)
    assert proc.returncode == 2
    assert "STEP_FAILURE" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("error: ")
