"""The deployment asset reads the gate verdict itself; edge bundles; <model>_rollback_job."""

import json

import pytest
import yaml

from pipelines import deploy
from tests.conftest import failure_text, fast_adult_spec, materializations
from tests.serving_support import Receiver

pytestmark = pytest.mark.slow


def test_deploy_job_alone_refuses_a_blocked_model_and_succeeds(tmp_path, adult_sample,
                                                               chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    receiver = Receiver()
    spec = fast_adult_spec(tmp_path, source, gate={"min_metrics": {"roc_auc": 0.999}},
                           monitoring={"alert_webhook": receiver.url})
    chain = chain_factory(spec)
    first = chain.run()
    # The blocking check stops `deployment` in the chain's own run…
    assert not first.success and "deployment" not in materializations(first)
    assert receiver.events() == ["gate_blocked"]
    assert "roc_auc ≥ 0.999" in receiver.received[0]["summary"]
    # …and a job that selects `deployment` alone still cannot deploy the model.
    result = chain.run("deploy")
    assert result.success
    meta = materializations(result)["deployment"]
    assert meta["outcome"] == "rejected" and "roc_auc ≥ 0.999" in meta["reason"]
    assert meta["stable_version"] == "none"
    store = chain.store()
    log = deploy.entries(store, "adult")
    assert [e.action for e in log] == ["reject"] and "deploy gate blocked" in log[0].reason
    assert deploy.current(store, "adult").stable is None
    assert not list((chain.home / "edge").rglob("*.onnx")), "no edge bundle for it either"
    # Asking again records nothing new, and raises no second alert.
    assert chain.run("deploy").success
    assert len(deploy.entries(store, "adult")) == 1
    assert receiver.events() == ["gate_blocked"]

    # A failed run raises an alert through the model's alert sensor.
    import dagster as dg

    sensor = chain.defs().resolve_sensor_def("adult_alert_sensor")
    failure = chain.instance.all_logs(first.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=chain.instance,
        dagster_run=first.dagster_run, dagster_event=failure[0].dagster_event,
    ).for_run_failure()
    sensor(context)
    assert receiver.events()[-1] == "run_failed"
    assert first.dagster_run.run_id in receiver.received[-1]["summary"]


def test_edge_bundle_size_limit_and_rollback_job(tmp_path, adult_sample, chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    edge = tmp_path / "edge-target"
    spec = fast_adult_spec(tmp_path, source, deployment={"edge": {"target": str(edge),
                                                                  "max_bytes": 5000}})
    chain = chain_factory(spec)
    result = chain.run()
    assert not result.success
    text = failure_text(result)
    assert "edge bundle for adult version 1" in text and "deployment.edge.max_bytes" in text
    assert deploy.entries(chain.store(), "adult") == [], "a failed deploy records nothing"

    raw = yaml.safe_load(spec.read_text())
    raw["deployment"]["edge"]["max_bytes"] = 2_000_000
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert chain.run("deploy").success
    bundle = edge / "adult" / "v1"
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "model.sig",
                                                        "model_int8.onnx"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["signature"] == "model.sig"  # its OpenSSF model signature
    import hashlib

    data = (bundle / "model_int8.onnx").read_bytes()
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["bytes"] == len(data) and manifest["version"] == 1
    # The bundle takes raw records: category strings and raw numbers in, a probability out.
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = {"numeric": np.full((1, len(manifest["inputs"]["numeric"])), 40.0, "float32")}
    for i, _ in enumerate(manifest["inputs"]["categorical"]):
        feeds[f"cat_{i}"] = np.array([["Private"]], dtype=object)
    names = {i.name for i in sess.get_inputs()}
    p = sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    assert 0.0 <= float(np.ravel(p)[0]) <= 1.0

    # With one version only, adult_rollback_job fails with the reason; the history is
    # unchanged.
    result = chain.run("rollback")
    assert not result.success and "nothing to roll back to" in failure_text(result)
    assert [e.action for e in deploy.entries(chain.store(), "adult")] == ["deploy"]
