"""A worker killed between asking for a trial and its first heartbeat: the trial is retried."""

import time
import warnings


def test_running_trial_without_heartbeat_goes_stale_and_is_retried(tmp_path):
    import optuna

    from pipelines.tuning import _adopt_orphans, storage

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    rdb = storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_s=1, grace_s=2)
    study = optuna.create_study(storage=rdb, study_name="orphans")
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study_id = rdb.get_study_id_from_name("orphans")
    adopted: set[int] = set()
    _adopt_orphans(study, rdb, study_id, adopted)
    assert adopted == set(), "a fresh trial is left alone"
    optuna.storages.fail_stale_trials(study)
    assert study.trials[orphan.number].state.name == "RUNNING", "no heartbeat: invisible"
    time.sleep(3.2)  # older than three heartbeat intervals
    _adopt_orphans(study, rdb, study_id, adopted)
    assert adopted == {orphan.number}
    deadline = time.monotonic() + 20  # the adopted heartbeat goes stale after the grace
    while time.monotonic() < deadline:
        time.sleep(0.5)
        optuna.storages.fail_stale_trials(study)
        if study.trials[orphan.number].state.name != "RUNNING":
            break
    states = [t.state.name for t in study.trials]
    assert states[orphan.number] == "FAIL"
    assert "WAITING" in states, "its parameters are queued again"
