"""Registration is idempotent per recipe key: a rerun of the same recipe adds no version."""

from __future__ import annotations

import pandas as pd

from resources.store import MlflowResource


def tiny_onnx() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def train_and_register(mlflow: MlflowResource, key: str, weights: str):
    """What trained_weights does on a miss: one MLflow run, the final model, registration."""
    from pipelines.tracking import TrainingLog

    with TrainingLog(mlflow.tracking_uri, mlflow.experiment("demo"), "trained_weights",
                     tags={"recipe_key": key}) as run:
        run.final(params={"lr": 0.01}, history=[{"epoch": 0, "val_loss": 0.5}],
                  metrics={"best_val_loss": 0.5}, onnx_model=tiny_onnx(),
                  reference=pd.DataFrame({"a": [1.0, 2.0]}))
        return run.register_once("demo", tags={"recipe_key": key, "trained_weights": weights})


def test_registering_one_recipe_key_twice_yields_one_version(tmp_path):
    from pipelines.tracking import find_recipe_version, import_mlflow

    mlflow = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            artifact_location=str(tmp_path / "artifacts"),
                            optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert find_recipe_version(mlflow.tracking_uri, "demo", "b3:k1", "b3:w1") is None
    first = train_and_register(mlflow, "b3:k1", "b3:w1")
    # The rerun after a kill between registration and the memo entry: same key, same weights.
    again = train_and_register(mlflow, "b3:k1", "b3:w1")
    assert (first.version, first.reused) == (1, False)
    assert (again.version, again.reused) == (1, True)
    client = import_mlflow().MlflowClient(tracking_uri=mlflow.tracking_uri)
    assert [int(v.version) for v in client.search_model_versions("name = 'demo'")] == [1]
    assert find_recipe_version(mlflow.tracking_uri, "demo", "b3:k1", "b3:w1") == 1
    # Other weights under the key (a nondeterministic device), or the weights under another
    # key, are not that version: they would be registered as a new one.
    assert find_recipe_version(mlflow.tracking_uri, "demo", "b3:k1", "b3:w2") is None
    assert find_recipe_version(mlflow.tracking_uri, "demo", "b3:k2", "b3:w1") is None
