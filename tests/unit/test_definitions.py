"""The code location: one prefixed chain per dataset spec, built by one factory."""

import dagster as dg
import pytest
import yaml

from tests.conftest import ADULT_CSV, REPO, write_spec

STAGES = {"raw_source", "raw_data", "validated_features", "trained_weights",
          "quantized_weights", "model_card", "deployment", "production_batches",
          "drift_report", "production_performance"}
JOBS = ("training", "deploy", "rollback", "retrain", "monitoring")


def three_specs(folder, *, broken: bool = False):
    """The demo, Adult, and a second Adult model on other features (and a broken fourth)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demo.yaml").write_text((REPO / "datasets" / "demo.yaml").read_text())
    write_spec(folder / "adult.yaml", "adult", ADULT_CSV)
    spec = yaml.safe_load((REPO / "datasets" / "adult.yaml").read_text())
    spec["name"], spec["schedule"] = "adult_small", None
    spec["source"]["path"] = str(ADULT_CSV)
    spec["columns"] = {c: spec["columns"][c] for c in ("age", "education-num", "sex",
                                                       "hours-per-week")}
    spec["sensitive"] = ["sex"]
    spec["monitoring"] = {k: v for k, v in spec.get("monitoring", {}).items() if k != "columns"}
    (folder / "adult_small.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if broken:
        bad = yaml.safe_load((REPO / "datasets" / "demo.yaml").read_text())
        bad["name"], bad["split"] = "broken", {"test": 1.5}
        (folder / "broken.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    return folder


def build(monkeypatch, tmp_path, folder):
    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("TIDELINE_DATASETS", str(folder))
    monkeypatch.delenv("TIDELINE_SPEC", raising=False)
    from definitions import build_definitions

    return build_definitions()


def test_each_spec_is_its_own_prefixed_chain_and_a_broken_one_is_reported(monkeypatch,
                                                                          tmp_path):
    defs = build(monkeypatch, tmp_path, three_specs(tmp_path / "datasets", broken=True))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    models = ("breast_cancer", "adult", "adult_small")
    assert keys == {f"{m}/{s}" for m in models for s in STAGES} | {"invalid_specs/broken"}
    for model in models:
        groups = {graph.get(dg.AssetKey([model, s])).group_name for s in STAGES}
        assert groups == {model}
        for kind in JOBS:
            job = defs.resolve_job_def(f"{model}_{kind}_job")
            assert job.tags["tideline/model"] == model
        retrain = defs.resolve_job_def(f"{model}_retrain_job")
        assert {k.path[0] for k in retrain.asset_layer.selected_asset_keys} == {model}
        assert defs.resolve_sensor_def(f"{model}_drift_sensor").job_name == f"{model}_retrain_job"
        assert defs.resolve_sensor_def(f"{model}_production_sensor").job_name == (
            f"{model}_monitoring_job")
        assert defs.resolve_sensor_def(f"{model}_alert_sensor")
    # The broken spec: an asset whose description names the file, field and rule.
    broken = graph.get(dg.AssetKey(["invalid_specs", "broken"]))
    assert "broken.yaml" in broken.description and "split.test" in broken.description
    # Schedules: 02:00 UTC by default; `schedule: null` turns a model's off.
    names = {s.name for s in defs.schedules}
    assert names == {"breast_cancer_nightly_schedule", "adult_nightly_schedule",
                     "gc_schedule", "verify_schedule"}
    nightly = defs.resolve_schedule_def("adult_nightly_schedule")
    assert nightly.cron_schedule == "0 2 * * *" and nightly.execution_timezone == "UTC"
    assert nightly.job_name == "adult_training_job"
    # Validation checks follow each model's own spec.
    checks = graph.asset_check_keys
    adult = {k.name for k in checks if k.asset_key == dg.AssetKey(["adult", "validated_features"])}
    demo = {k.name for k in checks
            if k.asset_key == dg.AssetKey(["breast_cancer", "validated_features"])}
    assert "allowed_categories" in adult and "allowed_categories" not in demo


def test_store_wide_parts_and_training_pool(monkeypatch, tmp_path):
    defs = build(monkeypatch, tmp_path, three_specs(tmp_path / "datasets"))
    reaper = defs.resolve_sensor_def("run_reaper_sensor")
    assert reaper.default_status == dg.DefaultSensorStatus.RUNNING
    assert reaper.minimum_interval_seconds == 60
    assert defs.resolve_job_def("adult_training_job").executor_def.name == "in_process"
    deploy_job = defs.resolve_job_def("adult_deploy_job")
    assert deploy_job.asset_layer.selected_asset_keys == {dg.AssetKey(["adult", "deployment"])}
    assert [n.name for n in defs.resolve_job_def("adult_rollback_job").nodes] == [
        "adult_rollback_deployment"]
    # One training at a time per instance, across every model: the "training" pool.
    pools = {defs.resolve_assets_def(dg.AssetKey([m, "trained_weights"])).op.pool
             for m in ("adult", "adult_small", "breast_cancer")}
    assert pools == {"training"}
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert instance["concurrency"]["pools"]["default_limit"] == 1
    gc = defs.resolve_schedule_def("gc_schedule")
    assert gc.job_name == "gc_job" and gc.cron_schedule == "0 3 * * 0"
    verify = defs.resolve_schedule_def("verify_schedule")
    assert verify.job_name == "verify_job" and verify.cron_schedule == "0 4 * * 0"
    store_alerts = defs.resolve_sensor_def("store_alert_sensor")
    assert store_alerts is not None
    gate = {k.name for k in defs.resolve_asset_graph().asset_check_keys
            if k.asset_key == dg.AssetKey(["adult", "model_card"])}
    assert gate == {"deploy_gate"}


def test_a_cron_dagster_refuses_is_that_specs_error_alone(monkeypatch, tmp_path):
    folder = three_specs(tmp_path / "datasets")
    spec = yaml.safe_load((folder / "adult_small.yaml").read_text())
    spec["schedule"] = "0 25 * * *"  # five fields, but no hour 25
    (folder / "adult_small.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    defs = build(monkeypatch, tmp_path, folder)
    graph = defs.resolve_asset_graph()
    bad = graph.get(dg.AssetKey(["invalid_specs", "adult_small"]))
    assert "adult_small.yaml" in bad.description and "0 25 * * *" in bad.description
    assert dg.AssetKey(["adult", "model_card"]) in graph.get_all_asset_keys()
    assert not any(k.path[0] == "adult_small" for k in graph.get_all_asset_keys())


def test_a_schedule_that_is_not_cron_is_a_spec_error(tmp_path):
    from pipelines.spec import SpecError, load_spec

    path = write_spec(tmp_path / "s.yaml", "demo", tmp_path / "d.parquet", schedule="nightly")
    with pytest.raises(SpecError, match=r"schedule: 'nightly' is not a cron expression"):
        load_spec(path)


def test_two_specs_with_one_name_keep_the_first(monkeypatch, tmp_path):
    folder = three_specs(tmp_path / "datasets")
    (folder / "zz_copy.yaml").write_text((folder / "adult.yaml").read_text())
    from pipelines.catalog import load_catalog

    monkeypatch.setenv("TIDELINE_DATASETS", str(folder))
    monkeypatch.delenv("TIDELINE_SPEC", raising=False)
    catalog = load_catalog()
    assert catalog.names == ["adult", "adult_small", "breast_cancer"]
    (error,) = catalog.errors
    assert "zz_copy.yaml" in error.message and "already used by" in error.message
    assert catalog.pick().name == "breast_cancer"  # several models: the demo by default
    with pytest.raises(ValueError, match="no model named 'nope'.*adult, adult_small"):
        catalog.pick("nope")


def test_loading_reads_each_spec_file_once(monkeypatch, tmp_path):
    from pathlib import Path

    folder = three_specs(tmp_path / "datasets")
    reads = []
    original = Path.read_text

    def counting(self, *args, **kwargs):
        if self.suffix == ".yaml" and self.parent == folder:
            reads.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    build(monkeypatch, tmp_path, folder)
    assert sorted(reads) == ["adult.yaml", "adult_small.yaml", "demo.yaml"]


def test_dagster_loads_the_code_location_lazily_with_a_broken_spec(tmp_path):
    """What `make ui` and the daemon load: `@dg.definitions`, through workspace.yaml."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    folder = three_specs(tmp_path / "datasets", broken=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(tmp_path / "state"),
           "DAGSTER_HOME": str(tmp_path / "state"), "TIDELINE_DATASETS": str(folder)}
    env.pop("TIDELINE_SPEC", None)
    (tmp_path / "state").mkdir()
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful for code location definitions" in proc.stdout + proc.stderr
    # The broken spec is named in the log, one line with its file and field.
    assert "broken.yaml" in proc.stderr and "split.test" in proc.stderr


def test_a_model_named_like_a_store_wide_part_is_refused_alone(monkeypatch, tmp_path):
    folder = three_specs(tmp_path / "datasets")
    spec = yaml.safe_load((folder / "adult_small.yaml").read_text())
    spec["name"] = "store"  # its alert sensor would be the store's own store_alert_sensor
    (folder / "adult_small.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    defs = build(monkeypatch, tmp_path, folder)
    graph = defs.resolve_asset_graph()
    bad = graph.get(dg.AssetKey(["invalid_specs", "adult_small"]))
    assert "name 'store' is reserved" in bad.description
    assert {k.path[0] for k in graph.get_all_asset_keys()} == {
        "adult", "breast_cancer", "invalid_specs"}
