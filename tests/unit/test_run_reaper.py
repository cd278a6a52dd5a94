"""release_dead_runs judges runs by their worker process: dead ones are released, nothing else.

A two-asset job whose first asset sits in the ``training`` pool (limit 1) stands in for the
chain; its run worker is a subprocess that dies by ``os._exit`` inside that asset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest
import yaml

from tests.conftest import REPO

KILL = """
import json, sys
import dagster as dg
from tests.unit.test_run_reaper import toy_job
toy_job().execute_in_process(instance=dg.DagsterInstance.get(), tags=json.loads(sys.argv[1]))
"""


@dg.asset(pool="training")
def fit(context) -> int:
    if os.environ.get("TOY_DIE"):
        os._exit(9)
    gate = GATES.get(context.run_id)
    if gate is not None:
        gate[0].set()
        gate[1].wait(60)
    return 1


@dg.asset
def card(fit: int) -> int:
    return fit + 1


GATES: dict[str, tuple[threading.Event, threading.Event]] = {}


def toy_job():
    return dg.Definitions(assets=[fit, card]).resolve_implicit_global_asset_job_def()


@pytest.fixture
def instance(home):
    config = {"telemetry": {"enabled": False}, "concurrency": {"pools": {"default_limit": 1}}}
    (home / "dagster" / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def killed_run(instance, tags: dict[str, str] | None = None) -> str:
    """Run the toy job in a subprocess that dies inside ``fit``; returns the run id."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOY_DIE": "1"}
    proc = subprocess.run([sys.executable, "-c", KILL, json.dumps(tags or {})], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    return instance.get_run_records(limit=1)[0].dagster_run.run_id


def holders(instance) -> list[str]:
    return [s.run_id for s in instance.event_log_storage.get_concurrency_info(
        "training").claimed_slots]


def test_dead_run_elsewhere_is_not_judged_and_a_canceled_one_gets_its_slot_freed(instance):
    from resources.runs import HOST_TAG, release_dead_runs

    elsewhere = killed_run(instance, {HOST_TAG: "another-host"})
    assert release_dead_runs(instance, log=lambda line: None) == []
    assert instance.get_run_by_id(elsewhere).status == dg.DagsterRunStatus.STARTED
    assert holders(instance) == [elsewhere], "another host's run keeps its slot"
    instance.delete_run(elsewhere)  # frees the slot, as Dagster does for a deleted run

    here = killed_run(instance)
    # Marked canceled by hand (as in the UI): Dagster's own daemon would free the slot only
    # after free_slots_after_run_end_seconds; the release frees it now.
    instance.report_run_canceled(instance.get_run_by_id(here), "canceled by hand")
    assert holders(instance) == [here]
    (item,) = release_dead_runs(instance, log=lambda line: None)
    assert (item.run_id, item.status, item.marked, item.pools) == (
        here, "CANCELED", None, ("training",))
    assert item.reason.startswith("process ") and item.reason.endswith(" is gone")
    assert holders(instance) == []
    assert instance.get_run_by_id(here).status == dg.DagsterRunStatus.CANCELED


def in_thread(instance, run_id: str) -> tuple[threading.Thread, list]:
    results: list = []
    worker = threading.Thread(target=lambda: results.append(toy_job().execute_in_process(
        instance=instance, run_id=run_id)))
    worker.start()
    return worker, results


def test_a_live_run_keeps_its_slot_and_one_waiting_behind_a_dead_run_proceeds(instance):
    from resources.runs import release_dead_runs
    from sensors.runs import build_run_reaper_sensor

    sensor = build_run_reaper_sensor()
    live_id = "00000000-0000-4000-8000-000000000001"
    GATES[live_id] = (threading.Event(), threading.Event())
    worker, results = in_thread(instance, live_id)
    try:
        assert GATES[live_id][0].wait(60), "the live run never reached fit"
        # Its process (this one) is alive: it keeps its run and its slot.
        assert release_dead_runs(instance, log=lambda line: None) == []
        assert holders(instance) == [live_id]
        tick = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(tick, dg.SkipReason)
        assert tick.skip_message.startswith("no dead runs")
    finally:
        GATES[live_id][1].set()
        worker.join(180)  # generous: a loaded 2-core machine writes its end events slowly
    assert not worker.is_alive(), "the live run did not finish within 180 s of its release"
    assert results and results[0].success and holders(instance) == []

    dead = killed_run(instance)
    waiting_id = "00000000-0000-4000-8000-000000000002"
    worker, results = in_thread(instance, waiting_id)
    def queued() -> set[str]:
        pool = instance.event_log_storage.get_concurrency_info("training")
        return {p.run_id for p in pool.pending_steps}

    deadline = time.monotonic() + 60
    while waiting_id not in queued() and time.monotonic() < deadline:
        time.sleep(0.2)
    # The next run is queued for the slot the dead run holds (without a release: forever).
    assert waiting_id in queued() and holders(instance) == [dead] and worker.is_alive()
    tick = sensor(dg.build_sensor_context(instance=instance))
    assert tick.skip_message.startswith("released 1 dead run(s): released run " + dead)
    assert "(STARTED, marked FAILURE)" in tick.skip_message
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    worker.join(120)
    assert results and results[0].success, "the waiting run got the slot and finished"
    assert holders(instance) == []


def test_a_reused_pid_is_not_the_run_worker():
    from resources.runs import WORKER_TAG, RunWorker, host_tags, process_identity, worker_alive

    identity = host_tags()[WORKER_TAG]
    assert identity == process_identity(os.getpid())
    me = RunWorker(pid=os.getpid(), host="h", seen_at=time.time(), identity=identity)
    assert worker_alive(me)
    # The same pid with another start time, or on another boot, is another process.
    boot, pid, ticks = identity.rsplit(":", 2)
    assert not worker_alive(RunWorker(os.getpid(), "h", time.time(),
                                      identity=f"{boot}:{pid}:{int(ticks) - 1}"))
    assert not worker_alive(RunWorker(os.getpid(), "h", time.time(),
                                      identity=f"another-boot:{pid}:{ticks}"))
    # Without a recorded identity a live pid counts as the worker, whatever the clock says:
    # a live worker is never taken for dead.
    assert worker_alive(RunWorker(os.getpid(), "h", seen_at=0.0))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    assert not worker_alive(RunWorker(int(gone.stdout), "h", seen_at=time.time()))

def test_the_local_instance_runs_dagsters_run_monitoring(home):
    import shutil

    shutil.copy(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    # The daemon then ends runs stuck starting or canceling and frees ended runs' slots.
    assert instance.run_monitoring_enabled
    assert "MONITORING" in instance.get_required_daemon_types()
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
    assert isinstance(instance.run_launcher, dg.DefaultRunLauncher)
