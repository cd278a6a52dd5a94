import dagster as dg

from tests.conftest import REPO


def test_definitions_snapshot(monkeypatch, tmp_path):
    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path))
    from definitions import build_definitions

    defs = build_definitions()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"raw_source", "raw_data", "validated_features", "trained_weights",
                    "quantized_weights", "model_card", "deployment", "production_batches",
                    "drift_report", "production_performance"}
    assert {s.name for s in defs.sensors} == {"production_sensor", "drift_sensor", "alert_sensor",
                                              "run_reaper_sensor"}
    reaper = defs.resolve_sensor_def("run_reaper_sensor")
    assert reaper.default_status == dg.DefaultSensorStatus.RUNNING
    assert reaper.minimum_interval_seconds == 60
    assert defs.resolve_sensor_def("drift_sensor").job_name == "retrain_job"
    assert defs.resolve_sensor_def("production_sensor").job_name == "monitoring_job"
    job = defs.resolve_job_def("training_job")
    assert job.executor_def.name == "in_process"
    deploy_job = defs.resolve_job_def("deploy_job")
    assert {k.to_user_string() for k in deploy_job.asset_layer.selected_asset_keys} == {
        "deployment"}
    assert [n.name for n in defs.resolve_job_def("rollback_job").nodes] == [
        "rollback_deployment"]
    schedule = defs.resolve_schedule_def("nightly_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == "training_job"
    # One training at a time per instance: the "training" pool, limited to 1 by default.
    assert defs.resolve_assets_def("trained_weights").op.pool == "training"
    import yaml

    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert instance["concurrency"]["pools"]["default_limit"] == 1
    gc = defs.resolve_schedule_def("gc_schedule")
    assert gc.job_name == "gc_job" and gc.cron_schedule == "0 3 * * 0"
    verify = defs.resolve_schedule_def("verify_schedule")
    assert verify.job_name == "verify_job" and verify.cron_schedule == "0 4 * * 0"
    check_keys = defs.resolve_asset_graph().asset_check_keys
    on_features = {k.name for k in check_keys if k.asset_key == dg.AssetKey("validated_features")}
    # One check per kind of rule the spec uses, plus the failed-row share.
    assert on_features == {"columns_present", "null_limits", "target_classes", "numeric_types",
                           "finite_values", "value_ranges", "failed_row_share"}
    assert {k.name for k in check_keys if k.asset_key == dg.AssetKey("model_card")} == {
        "deploy_gate"}


def test_asset_keys_do_not_depend_on_the_spec(monkeypatch, tmp_path):
    from definitions import build_definitions

    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path))
    keys = []
    for spec in ("demo", str(REPO / "datasets" / "adult.yaml")):
        monkeypatch.setenv("TIDELINE_SPEC", spec)
        graph = build_definitions().resolve_asset_graph()
        keys.append(graph.get_all_asset_keys())
        checks = {k.name for k in graph.asset_check_keys}
    assert keys[0] == keys[1]
    assert "allowed_categories" in checks, "Adult has categorical rules, the demo has none"
    assert isinstance(keys[0], (set, frozenset)) and dg.AssetKey("model_card") in keys[0]
