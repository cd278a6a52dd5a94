"""The Optuna study survives SIGKILL and finishes exactly the planned trials."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.spec import load_spec
from pipelines.stages.features import build_features
from pipelines.stages.raw import snapshot_source
from pipelines.store import ArtifactStore
from tests.conftest import REPO, demo_data, write_spec

pytestmark = pytest.mark.slow
PLANNED = 6


def features_artifact(tmp_path, home):
    from pipelines.artifacts import save_result

    data = demo_data(home)
    spec_path = write_spec(tmp_path / "tune.yaml", "demo", data, tuning__n_trials=PLANNED,
                           tuning__pruner="none",
                           # Long enough (no early stop) that a kill lands mid-study.
                           training__patience=1000,
                           tuning__search_space__epochs={"low": 120, "high": 160})
    spec = load_spec(spec_path)
    store = ArtifactStore(home / "store")
    raw = save_result(store, snapshot_source(spec, store))
    feats = save_result(store, build_features(spec, store, raw))
    return spec_path, store, feats.content_hash


# Starts cli.tune_worker only once the file named by argv[1] exists, after the heavy
# imports, so workers started together begin their trials together: how long a
# process takes to import torch must not decide whether it gets any trial.
GATED = """
import sys, time
from pathlib import Path
import optuna, torch  # noqa: F401
import pipelines.training, pipelines.tuning  # noqa: F401
from cli.tune_worker import main
gate = Path(sys.argv[1])
Path(str(gate) + f".{sys.argv[2]}").touch()
deadline = time.monotonic() + 600
while not gate.exists():
    if time.monotonic() > deadline:
        sys.exit("the gate never opened")
    time.sleep(0.02)
sys.exit(main(sys.argv[3:]))
"""


def worker(spec_path, store, features, storage, study, gate=None, name=""):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_THREADS": "1"}
    start = ([sys.executable, "-c", GATED, str(gate), name] if gate
             else [sys.executable, "-m", "cli.tune_worker"])
    return subprocess.Popen(
        [*start, "--study", study, "--features", features,
         "--spec", str(spec_path), "--store", store.root, "--storage", storage,
         "--heartbeat", "1", "--grace", "3"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trials(storage, study):
    import optuna

    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def finished(ts):
    return [t for t in ts if t.state.name in ("COMPLETE", "PRUNED")]


def test_killed_study_resumes_without_repeating_finished_trials(tmp_path, home):
    spec_path, store, features = features_artifact(tmp_path, home)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    proc = worker(spec_path, store, features, storage, "killed")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            if len(finished(trials(storage, "killed"))) >= 2:
                break
        except KeyError:
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: t.params for t in finished(trials(storage, "killed"))}
    assert 2 <= len(before) < PLANNED
    rerun = worker(spec_path, store, features, storage, "killed")
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    after = trials(storage, "killed")
    done = finished(after)
    assert len(done) == PLANNED
    assert {t.number: t.params for t in done if t.number in before} == before
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == len(params), "a finished trial was repeated"
    assert all(t.state.name != "RUNNING" for t in after)


def two_workers_finish_exactly_the_plan(tmp_path, home, storage):
    """Two worker processes on one study end with exactly PLANNED finished trials."""
    import optuna

    spec_path, store, features = features_artifact(tmp_path, home)
    optuna.create_study(study_name="shared", storage=storage)
    gate = tmp_path / "go"
    procs = [worker(spec_path, store, features, storage, "shared", gate, str(i))
             for i in range(2)]
    try:
        deadline = time.monotonic() + 300
        while not all(Path(f"{gate}.{i}").exists() for i in range(2)):
            assert time.monotonic() < deadline, "the workers never got ready"
            assert all(p.poll() is None for p in procs), "a worker ended before the gate"
            time.sleep(0.05)
        gate.touch()
        outs = [p.communicate(timeout=600)[0] for p in procs]
    finally:  # after a failure, no worker is left waiting or running
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), outs
    assert len(finished(trials(storage, "shared"))) == PLANNED
    assert all("trial" in out for out in outs), "both workers ran trials"


def test_two_workers_share_one_study_sqlite(tmp_path, home):
    two_workers_finish_exactly_the_plan(tmp_path, home, f"sqlite:///{tmp_path / 'optuna.db'}")
