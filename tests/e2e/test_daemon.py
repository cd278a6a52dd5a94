"""The real dagster-daemon: a clean batch leads to no retraining, a drifted batch to exactly one."""

import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest

from tests.conftest import ADULT_CSV, REPO, fast_adult_spec
from tests.serving_support import LOOSE_GATE

pytestmark = pytest.mark.slow

MONITORING = {"consecutive_batches": 1, "drift_threshold": 0.05, "min_batch_rows": 200,
              "cooldown_minutes": 0, "numeric": {"method": "ks", "threshold": 0.001},
              "columns": {"native-country": {"threshold": 0.2}}}


def runs_of(instance, job: str) -> list:
    import dagster as dg

    return instance.get_runs(dg.RunsFilter(job_name=job))


def wait(predicate, timeout: float, what: str, log):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    tail = log.read_text()[-4000:]
    raise AssertionError(f"timed out waiting for {what}\n--- daemon log ---\n{tail}")


def test_daemon_retrains_once_on_drift_and_never_on_a_clean_batch(tmp_path, home, adult_sample,
                                                                  chain_factory):
    """Two models on one daemon: both see a clean batch (no retraining); then a drifted
    batch of one model retrains that model exactly once and never the other."""
    import dagster as dg

    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    folder = tmp_path / "datasets"
    folder.mkdir()
    spec = fast_adult_spec(folder, source, gate=LOOSE_GATE, training__reference_rows=1000,
                           monitoring=MONITORING)
    twin_spec = folder / "adult_twin.yaml"
    twin_spec.write_text(spec.read_text().replace("name: adult\n", "name: adult_twin\n", 1))
    chain, twin = chain_factory(spec), chain_factory(twin_spec)
    assert twin.model == "adult_twin"
    assert chain.run().success and twin.run().success
    shutil.copy(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    held_out = pd.read_csv(ADULT_CSV, dtype=str, keep_default_na=False).iloc[3000:4200]
    batches = home / "production" / chain.model / "batches"  # each model's own store
    twin_batches = home / "production" / twin.model / "batches"
    for folder_ in (batches, twin_batches):
        folder_.mkdir(parents=True)

    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(home),
           "DAGSTER_HOME": str(home / "dagster"), "TIDELINE_DATASETS": str(folder),
           "TIDELINE_SENSOR_INTERVAL_S": "2"}
    env.pop("TIDELINE_SPEC", None)
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "dagster-daemon") if (REPO / ".venv").exists()
         else "dagster-daemon", "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        for folder_ in (batches, twin_batches):
            held_out.iloc[:600].to_csv(folder_ / "001-clean.csv", index=False)
        for model in (chain, twin):
            wait(lambda m=model: any(r.status == dg.DagsterRunStatus.SUCCESS
                                     for r in runs_of(instance, m.job("monitoring"))), 240,
                 f"the monitoring run of {model.model}'s clean batch", log)
        time.sleep(8)  # several ticks of both drift sensors
        for model in (chain, twin):
            assert runs_of(instance, model.job("retrain")) == [], "a clean batch must not retrain"
            clean = instance.get_latest_materialization_event(model.key("drift_report"))
            assert clean.asset_materialization.metadata["drifted"].value is False
        twin_report = instance.get_latest_materialization_event(twin.key("drift_report"))

        shifted = held_out.iloc[600:].copy()
        shifted["age"] = (shifted["age"].astype(int) * 1.3).round().astype(int).astype(str)
        shifted.to_csv(batches / "002-drifted.csv", index=False)
        wait(lambda: len(runs_of(instance, chain.job("retrain"))) >= 1, 240,
             "the adult_retrain_job run the drifted batch should request", log)
        time.sleep(8)  # more ticks: still exactly one
        retrains = runs_of(instance, chain.job("retrain"))
        assert len(retrains) == 1
        assert retrains[0].tags["dagster/sensor_name"] == "adult_drift_sensor"
        assert retrains[0].tags["tideline/model"] == "adult"
        assert "consecutive batches" in retrains[0].tags["tideline/trigger"]
        # The other model: no retraining, and its drift report is still the clean one.
        assert runs_of(instance, twin.job("retrain")) == []
        assert instance.get_latest_materialization_event(
            twin.key("drift_report")).run_id == twin_report.run_id
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
