"""Kubernetes: deploy/ files validate against the API models; per-asset pods via dagster-k8s."""

import json

import pytest
import yaml

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
MODELS = {("apps/v1", "Deployment"): "V1Deployment", ("v1", "Service"): "V1Service",
          ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler"}


def test_every_yaml_in_deploy_loads():
    files = sorted(DEPLOY.glob("*.yaml"))
    assert {f.name for f in files} >= {"dagster.yaml", "values.yaml", "serving.yaml"}
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), path


def test_serving_manifests_round_trip_through_the_kubernetes_models():
    from kubernetes import client

    api = client.ApiClient()

    class Response:
        def __init__(self, doc):
            self.data = json.dumps(doc)

    docs = list(yaml.safe_load_all((DEPLOY / "serving.yaml").read_text()))
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for doc in docs:
        model = api.deserialize(Response(doc), MODELS[(doc["apiVersion"], doc["kind"])])
        # The models drop fields they do not know, so a misspelt field would not survive.
        assert api.sanitize_for_serialization(model) == doc, doc["kind"]
    deployment = docs[0]["spec"]["template"]["spec"]["containers"][0]
    assert deployment["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert deployment["livenessProbe"]["httpGet"]["path"] == "/health"


def test_a_misspelt_field_is_caught():
    from kubernetes import client

    doc = list(yaml.safe_load_all((DEPLOY / "serving.yaml").read_text()))[1]
    doc["spec"]["selectr"] = doc["spec"].pop("selector")

    class Response:
        data = json.dumps(doc)

    api = client.ApiClient()
    assert api.sanitize_for_serialization(api.deserialize(Response(), "V1Service")) != doc


def test_instance_yaml_uses_the_k8s_run_launcher_and_postgres():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    assert "postgres" in instance["storage"]
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"] == [
        "-m", "definitions"]


@pytest.fixture
def k8s_defs(monkeypatch, tmp_path):
    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path))
    monkeypatch.setenv("TIDELINE_EXECUTOR", "k8s")
    monkeypatch.setenv("TIDELINE_DATASETS", str(REPO / "datasets"))
    monkeypatch.delenv("TIDELINE_SPEC", raising=False)
    from definitions import build_definitions

    return build_definitions()


def test_training_step_pod_gets_a_gpu_through_dagster_k8s(k8s_defs):
    import dagster as dg
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )

    # Every model's chain runs on k8s (both bundled specs are models).
    for model in ("breast_cancer", "adult"):
        assert k8s_defs.resolve_job_def(f"{model}_training_job").executor_def.name == "k8s"
    tags = k8s_defs.resolve_assets_def(dg.AssetKey(["breast_cancer", "trained_weights"])).op.tags
    user = get_user_defined_k8s_config(tags)
    config = DagsterK8sJobConfig(
        job_image="registry.example.com/tideline:latest", dagster_home="/opt/dagster/home",
        instance_config_map="dagster-instance", env_config_maps=["tideline-env"],
        env_secrets=["tideline-secrets"])
    job = construct_dagster_k8s_job(config, args=["dagster", "api", "execute_step"],
                                    job_name="tideline-trained-weights",
                                    user_defined_k8s_config=user)
    pod = job.spec.template.spec
    container = pod.containers[0]
    assert container.image == "registry.example.com/tideline:latest"
    assert container.resources.limits == {"memory": "16Gi", "nvidia.com/gpu": "1"}
    assert container.resources.requests == {"cpu": "2", "memory": "8Gi"}
    sources = {(e.config_map_ref.name if e.config_map_ref else None,
                e.secret_ref.name if e.secret_ref else None) for e in container.env_from}
    assert (None, "tideline-secrets") in sources and ("tideline-env", None) in sources
    assert pod.tolerations[0].key == "nvidia.com/gpu"
    # Other steps get no GPU.
    other = get_user_defined_k8s_config(
        k8s_defs.resolve_assets_def(dg.AssetKey(["breast_cancer", "model_card"])).op.tags)
    assert not other.container_config
