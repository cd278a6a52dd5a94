"""Several models in one instance: each run touches its own model's history alone."""

import pytest
import yaml

from tests.conftest import CHAIN, demo_data
from tests.unit.test_definitions import three_specs

pytestmark = pytest.mark.slow
FAST = {"epochs": 3, "reference_rows": 200}


def test_materializing_one_model_leaves_the_others_untouched(home, monkeypatch, tmp_path):
    import dagster as dg
    import mlflow

    folder = three_specs(tmp_path / "datasets")
    for name in ("adult.yaml", "adult_small.yaml"):
        spec = yaml.safe_load((folder / name).read_text())
        spec["training"] = {**spec.get("training", {}), **FAST}
        spec["quantization"] = {"calibration_rows": 128}
        (folder / name).write_text(yaml.safe_dump(spec, sort_keys=False))
    demo_data(home)
    monkeypatch.setenv("TIDELINE_DATASETS", str(folder))
    monkeypatch.delenv("TIDELINE_SPEC", raising=False)
    from definitions import build_definitions

    defs = build_definitions()
    instance = dg.DagsterInstance.local_temp(tempdir=str(home / "dagster"),
                                             overrides={"telemetry": {"enabled": False}})
    small = defs.resolve_job_def("adult_small_training_job").execute_in_process(
        instance=instance, raise_on_error=False)
    assert small.success
    def latest_runs():
        return {stage: instance.get_latest_materialization_event(
            dg.AssetKey(["adult_small", stage])).run_id for stage in CHAIN}

    before = latest_runs()
    assert set(before.values()) == {small.run_id}
    demo = defs.resolve_job_def("breast_cancer_training_job").execute_in_process(
        instance=instance, raise_on_error=False)
    assert demo.success
    # Only the demo's assets were materialized by the demo's run ...
    touched = {e.asset_key.path[0] for e in demo.get_asset_materialization_events()}
    assert touched == {"breast_cancer"}
    # ... so adult_small's latest materializations are still its own run's, and Adult
    # (loaded beside them) was never materialized at all.
    assert latest_runs() == before
    assert instance.get_latest_materialization_event(dg.AssetKey(["adult", "raw_data"])) is None
    # Every run, materialization and MLflow run says which model it belongs to.
    for result, model in ((small, "adult_small"), (demo, "breast_cancer")):
        assert instance.get_run_by_id(result.run_id).tags["tideline/model"] == model
        metas = [e.materialization.metadata for e in result.get_asset_materialization_events()]
        assert {m["model"].value for m in metas} == {model}
        run_id = next(m["mlflow_run_id"].value for m in metas if "mlflow_run_id" in m
                      and "registry_version" in m)
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
        assert client.get_run(run_id).data.tags["tideline/model"] == model
    # One memo table, one deployment history and one edge folder per model.
    store = home / "store"
    assert {p.name for p in (store / "keys").iterdir()} == {"adult_small", "breast_cancer"}
    assert {p.name for p in (store / "records" / "deployments").iterdir()} == {
        "adult_small", "breast_cancer"}
    assert {p.name for p in (home / "edge").iterdir()} == {"adult_small", "breast_cancer"}
