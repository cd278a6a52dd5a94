"""An edge bundle over ``deployment.edge.max_bytes`` stops the publication of its version.

The real chain deploys version 1, then trains version 2 under a limit its bundle cannot fit:
the deployment step fails naming the limit, MLflow holds nothing of version 2's publication
(no audit pack logged, no tag, no alias), the history, head and edge target are as they were,
and the service that was serving version 1 goes on serving it. Raising the limit then
publishes version 2 normally: the failure left nothing in its way.
"""

from __future__ import annotations

import httpx
import pytest
import yaml

from pipelines import audit, deploy
from pipelines.targets import check_edge, edge_files
from tests.conftest import failure_text, fast_adult_spec, materializations
from tests.serving_support import LOOSE_GATE, Service, held_out_records

pytestmark = pytest.mark.slow
MODEL = "adult"


def set_spec(spec, **values) -> None:
    raw = yaml.safe_load(spec.read_text())
    for dotted, value in values.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))


def audit_pack_runs(client) -> set[str]:
    """The ids of every run in the tracking store with an ``audit_pack`` artifact folder."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {run.info.run_id for run in client.search_runs(experiments, max_results=1000)
            if client.list_artifacts(run.info.run_id, "audit_pack")}


def aliases(client) -> dict[str, str]:
    return {name: str(version)
            for name, version in client.get_registered_model(MODEL).aliases.items()}


def test_a_bundle_over_the_limit_publishes_nothing_and_the_old_model_keeps_serving(
        tmp_path, home, adult_sample, chain_factory):
    from pipelines.paths import mlflow_uri
    from pipelines.tracking import import_mlflow

    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    target = tmp_path / "edge"
    # Straight to stable: were version 2 published, the champion alias would move to it.
    spec = fast_adult_spec(tmp_path, source, gate=LOOSE_GATE, deployment={
        "edge": {"target": str(target)}, "canary": {"share": 0.0}})
    chain = chain_factory(spec)
    assert chain.run().success
    store = chain.store()
    v1 = deploy.current(store, MODEL).stable
    assert v1.version == 1 and v1.audit_pack
    history, head = deploy.entries(store, MODEL), deploy.head(store, MODEL)
    client = import_mlflow().MlflowClient(tracking_uri=mlflow_uri(home))
    logged = audit_pack_runs(client)
    assert logged == {client.get_model_version(MODEL, "1").run_id}

    set_spec(spec, training__seed=1, deployment__edge__max_bytes=5000)
    records, _, _ = held_out_records(home)
    with Service(home, spec) as svc:
        key = svc.api_key()
        assert svc.ready()["stable"] == 1
        result = chain.run()
        assert not result.success
        text = failure_text(result)
        assert "edge bundle for adult version 2" in text
        assert "over deployment.edge.max_bytes = 5,000" in text
        assert "deployment" not in materializations(result)
        assert materializations(result)["trained_weights"]["cache"] == "miss", \
            "version 2 was trained: only its publication failed"
        # Version 2 is in the registry (training registered it) but nothing published it.
        versions = {str(v.version): v for v in client.search_model_versions(f"name='{MODEL}'")}
        assert set(versions) == {"1", "2"}
        assert audit.MLFLOW_TAG not in versions["2"].tags
        assert versions["1"].tags[audit.MLFLOW_TAG] == v1.audit_pack
        assert client.list_artifacts(versions["2"].run_id, "audit_pack") == []
        assert audit_pack_runs(client) == logged
        assert aliases(client) == {"champion": "1"}
        # The history, head and edge target are untouched; version 1 is current.
        assert deploy.entries(store, MODEL) == history
        assert deploy.head(store, MODEL) == head
        state = deploy.current(store, MODEL)
        assert state.stable == v1 and state.canary is None
        assert not (target / MODEL / "v2").exists()
        assert check_edge(str(target), MODEL, 1, edge_files(store, MODEL, v1)) == ([], [])
        # …and the service goes on serving it.
        ready = svc.ready()
        assert ready["stable"] == 1 and ready["ready"]
        answer = httpx.post(f"{svc.url}/predict", json={"records": records[:3]},
                            headers={"X-API-Key": key}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == 1

    # With room for the bundle, the same version is published, its pack logged once.
    set_spec(spec, deployment__edge__max_bytes=2_000_000)
    assert chain.run("deploy").success
    v2 = deploy.current(store, MODEL).stable
    assert v2.version == 2 and [e.action for e in deploy.entries(store, MODEL)] == [
        "deploy", "deploy"]
    assert client.get_model_version(MODEL, "2").tags[audit.MLFLOW_TAG] == v2.audit_pack
    assert audit_pack_runs(client) == logged | {client.get_model_version(MODEL, "2").run_id}
    assert aliases(client) == {"champion": "2", "previous": "1"}
    assert sorted(p.name for p in (target / MODEL / "v2").iterdir()) == [
        "manifest.json", "model.sig", "model_int8.onnx"]
