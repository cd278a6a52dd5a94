"""Helpers for the metrics tests: a one-model service on a tiny ONNX model; parsed expositions."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

from pipelines import deploy
from pipelines.deploy import DeployedModel, ModelInputs, VariantFile
from pipelines.store import ArtifactStore
from serving.security import ApiKeys
from tests.conftest import ADULT_CSV, write_spec

MODEL = "adult_small"


def model_bytes() -> bytes:
    """An ONNX model on the raw ``numeric`` input (one column) answering sigmoid(x / 100)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("IsNaN", ["numeric"], ["missing"]),
         helper.make_node("Where", ["missing", "zero", "numeric"], ["x"]),
         helper.make_node("Mul", ["x", "scale"], ["z"]),
         helper.make_node("Sigmoid", ["z"], ["p"])], "tiny",
        [helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
         helper.make_tensor("scale", TensorProto.FLOAT, [], [0.01])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def deploy_model(store: ArtifactStore, version: int) -> None:
    """Deploy version ``version`` of the tiny model as the model's stable version."""
    data = model_bytes()
    params = {"numeric": {"age": {"median": 38.0, "mean": 38.5, "scale": 13.0}},
              "categorical": {}}
    entry = DeployedModel(
        version=version, trained_weights=f"b3:tw{version}", quantized_weights=f"b3:qw{version}",
        model_card=f"b3:card{version}", inputs=ModelInputs(numeric=("age",), categorical=()),
        variants={"fp32": VariantFile(store.put_bytes(data), hashlib.sha256(data).hexdigest(),
                                      len(data))},
        preprocess=store.put_bytes(json.dumps(params).encode()))
    deploy.deploy(store, MODEL, entry, canary_share=0.0)


@contextmanager
def served(tmp_path: Path, monkeypatch, **spec_overrides):
    """A TestClient on the service of one deployed model; yields (client, API key)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    folder = tmp_path / "datasets"
    folder.mkdir()
    write_spec(folder / "small.yaml", "adult", ADULT_CSV, name=MODEL,
               columns={"age": {"type": "numeric"}}, sensitive=[],
               serving__variants={"high": "fp32", "normal": "fp32"}, **spec_overrides)
    home = tmp_path / "home"
    monkeypatch.setenv("TIDELINE_HOME", str(home))
    monkeypatch.setenv("TIDELINE_DATASETS", str(folder))
    monkeypatch.setenv("TIDELINE_POLL_S", "0.05")
    for name in ("TIDELINE_SPEC", "TIDELINE_STORE", "TIDELINE_PRODUCTION_DIR",
                 "TIDELINE_DEFAULT_MODEL", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)
    deploy_model(ArtifactStore(home / "store"), 1)
    key = ApiKeys(home / "serving" / "api_keys.json").create("metrics")
    with TestClient(create_app()) as client:
        assert client.get("/ready").json()["stable"] == 1
        yield client, key


def families(text: str) -> dict[str, object]:
    """The metric families of an exposition, by name (``text_string_to_metric_families``)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_value(text: str, name: str, **labels: str) -> float:
    """The summed value of the samples named ``name`` whose labels include ``labels``."""
    return sum(s.value for f in families(text).values() for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())
