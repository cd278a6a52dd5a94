"""A run killed mid-training does not wedge the next one: it is released, and training resumes.

The run worker dies with ``os._exit`` right after the final fit's second epoch is
checkpointed (fault injection in the subprocess, not a timed kill), on the instance that
``DAGSTER_HOME`` names with the repository's ``dagster.yaml`` (the ``training`` pool
limited to 1). The run is left ``STARTED`` holding the pool's only slot until
``release_dead_runs`` marks it failed and frees the slot; then ``adult_training_job``
completes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO, fast_adult_spec, materializations

pytestmark = pytest.mark.slow

# Runs the chain the way `make demo` does, with the final fit killed after epoch 2.
DIE_AFTER_EPOCH_2 = """
import os
import pipelines.training as training

real_train = training.train


def train(*args, on_epoch=None, **kwargs):
    def dying(row):
        if on_epoch is not None:
            on_epoch(row)
        if row["epoch"] == 1:  # epoch 2 of 3 is checkpointed and logged: die here
            os._exit(9)

    return real_train(*args, on_epoch=dying, **kwargs)


training.train = train
from cli.demo import run_chain

run_chain("adult")
"""


def local_instance(home):
    """The instance DAGSTER_HOME names, configured by the repository's dagster.yaml."""
    import dagster as dg

    from pipelines.paths import instance_config

    config = instance_config(yaml.safe_load((REPO / "dagster.yaml").read_text()), None)
    (home / "dagster" / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def test_run_killed_mid_training_is_released_and_the_next_run_resumes_it(
        tmp_path, home, adult_sample, chain_factory):
    import dagster as dg

    from resources.runs import release_dead_runs, this_host

    spec = fast_adult_spec(tmp_path, adult_sample)
    chain = chain_factory(spec)
    # The step of adult/trained_weights, as Dagster names it.
    step = chain.key("trained_weights").to_python_identifier()
    assert step == "adult__trained_weights"
    instance = local_instance(home)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_SPEC": str(spec)}
    proc = subprocess.run([sys.executable, "-c", DIE_AFTER_EPOCH_2], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 9, proc.stderr[-3000:]

    (dead,) = instance.get_run_records()
    run_id = dead.dagster_run.run_id
    assert dead.dagster_run.status == dg.DagsterRunStatus.STARTED
    assert dead.dagster_run.tags["tideline/host"] == this_host()
    pool = instance.event_log_storage.get_concurrency_info("training")
    # The pool's only slot is claimed by the dead run: any later training would wait forever.
    assert pool.limit == 1 and pool.slot_count == 1
    assert [(s.run_id, s.step_key) for s in pool.claimed_slots] == [(run_id, step)]

    lines: list[str] = []
    released = release_dead_runs(instance, log=lines.append)
    (item,) = released
    (start,) = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START).records
    worker_pid = start.event_log_entry.dagster_event.pid
    reason = f"process {worker_pid} on {this_host()} is gone"
    assert (item.run_id, item.status, item.marked, item.reason, item.pools) == (
        run_id, "STARTED", "FAILURE", reason, ("training",))
    assert lines == [item.describe()] and "freed its slot in pool training" in lines[0]
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    (failure,) = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert reason in failure.event_log_entry.message
    pool = instance.event_log_storage.get_concurrency_info("training")
    assert pool.claimed_slots == [] and pool.pending_steps == []
    assert release_dead_runs(instance, log=lines.append) == [], "released once only"

    chain.instance = instance
    result = chain.run()
    assert result.success
    meta = materializations(result)["trained_weights"]
    assert meta["cache"] == "miss" and meta["epochs_run"] == 3
    logged = [e.user_message for e in instance.all_logs(result.run_id)
              if e.step_key == step]
    assert any(m.startswith("resuming the final fit from the checkpoint") for m in logged)
    # Epochs 1 and 2 came from the checkpoint: only the third one ran again.
    assert [m.split(":")[0] for m in logged if m.startswith("epoch ")] == ["epoch 3/3"]
