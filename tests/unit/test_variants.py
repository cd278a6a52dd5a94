"""Variants that earn their place: drop reasons, the edge variant, serving's fp32 fallback."""

import hashlib
import json

import numpy as np
import pytest

from pipelines.deploy import DeployedModel, ModelInputs, VariantFile
from pipelines.quantize import Parity
from pipelines.stages.quantization import drop_reason
from pipelines.store import ArtifactStore
from pipelines.targets import (
    EDGE_MANIFEST,
    choose_edge_variant,
    edge_files,
    edge_variant,
    smallest_variant,
)


def test_a_variant_over_tolerance_or_not_smaller_is_dropped_with_its_reason():
    over = Parity("int8", max_abs_diff=0.37, mean_abs_diff=0.01, tolerance=0.05, rows=600)
    assert drop_reason(over, 5_000, 9_400) == (
        "int8: max |Δp| 0.37 over tolerance 0.05 (quantization.int8_tolerance) on 600 "
        "held-out rows")
    within = Parity("int8", max_abs_diff=0.01, mean_abs_diff=0.001, tolerance=0.05, rows=600)
    assert drop_reason(within, 12_800, 9_400) == (
        "int8: 12.8 kB is not smaller than fp32's 9.4 kB")
    assert drop_reason(within, 5_000, 9_400) is None
    # fp16 is kept for GPUs whatever its size; only its tolerance applies.
    fp16 = Parity("fp16", max_abs_diff=0.001, mean_abs_diff=0.0001, tolerance=0.01, rows=600)
    assert drop_reason(fp16, 9_400, 9_400) is None


def _model_bytes(p: float) -> bytes:
    """A tiny ONNX predictor taking the raw ``numeric`` input and answering ``p``."""
    from onnx import TensorProto, helper

    const = helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
        "v", TensorProto.FLOAT, [1], [float(np.log(p / (1 - p)))]))
    graph = helper.make_graph(
        [const, helper.make_node("Sigmoid", ["c"], ["p"])], "g",
        [helper.make_tensor_value_info("numeric", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def _entry(store: ArtifactStore, files: dict[str, bytes], **kw) -> DeployedModel:
    variants = {name: VariantFile(store.put_bytes(data), hashlib.sha256(data).hexdigest(),
                                  len(data)) for name, data in files.items()}
    return DeployedModel(version=3, trained_weights="b3:tw", quantized_weights="b3:qw",
                         model_card="b3:card", inputs=ModelInputs(numeric=("x",)),
                         variants=variants, **kw)


def test_the_edge_bundle_holds_int8_else_the_smallest_published_variant_and_names_it(
        tmp_path):
    store = ArtifactStore(tmp_path / "store")
    fp32, fp16 = b"f" * 90, b"h" * 50
    model = _entry(store, {"fp32": fp32, "fp16": fp16})  # int8 dropped
    assert choose_edge_variant(model.variants) == "fp16"
    recorded = DeployedModel.from_json(
        model.to_json() | {"edge_variant": choose_edge_variant(model.variants)})
    files = edge_files(store, "adult", recorded)
    assert sorted(files) == [EDGE_MANIFEST, "model_fp16.onnx"]
    manifest = json.loads(files[EDGE_MANIFEST])
    assert (manifest["variant"], manifest["file"], manifest["bytes"]) == (
        "fp16", "model_fp16.onnx", 50)
    assert manifest["sha256"] == hashlib.sha256(fp16).hexdigest()
    # Only fp32 published: the bundle holds fp32.
    alone = _entry(store, {"fp32": fp32})
    assert choose_edge_variant(alone.variants) == "fp32"
    # A published int8 is the edge variant (it is smaller than fp32), even beside a smaller fp16.
    both = _entry(store, {"fp32": fp32, "int8": b"i" * 60, "fp16": fp16})
    assert smallest_variant(both.variants) == "fp16" and choose_edge_variant(both.variants) \
        == "int8"
    # An entry written before variants could be dropped keeps its int8 bundle.
    legacy = _entry(store, {"fp32": fp32, "int8": b"i" * 120, "fp16": fp16})
    assert legacy.edge_variant is None and edge_variant(legacy) == "int8"


def test_serving_routes_traffic_of_a_dropped_variant_to_fp32(tmp_path):
    from serving.models import load_model

    store = ArtifactStore(tmp_path / "store")
    entry = _entry(store, {"fp32": _model_bytes(0.25), "fp16": _model_bytes(0.75)})
    model = load_model(store, entry, {"fp32", "int8", "fp16"})
    assert model.fallbacks == {"int8": "fp32"}
    assert sorted(model.sessions) == ["fp16", "fp32"]
    feeds = model.feeds([{"x": 1.0}])
    assert model.run("int8", feeds) == pytest.approx([0.25])
    assert model.run("fp16", feeds) == pytest.approx([0.75])


def test_ready_says_which_traffic_is_served_by_fp32(tmp_path):
    from types import SimpleNamespace

    from serving.models import LoadedModel
    from serving.runtime import ModelRuntime, ReloadOutcome, Routing, VariantFallback

    class Config:  # what ModelRuntime reads of a model's serving config
        name = "adult"
        numeric, categorical = ("x",), ()

        class serving:  # noqa: N801
            variants = {"high": "fp32", "normal": "int8"}
            max_records = 10

    rt = ModelRuntime.__new__(ModelRuntime)
    rt.config, rt.routing, rt.deployed, rt.models = Config, None, True, {}
    rt.last_reload, rt.shared = ReloadOutcome("ok", 7), SimpleNamespace(batching=False)
    assert rt.fallbacks() == []
    stable = LoadedModel(version=3, trained_weights="b3:tw", numeric=["x"], categorical=[],
                         sessions={}, fallbacks={"int8": "fp32"})
    canary = LoadedModel(version=4, trained_weights="b3:tw4", numeric=["x"], categorical=[],
                         sessions={})
    rt.routing = Routing(seq=7, stable=stable, canary=canary)
    assert rt.fallbacks() == [VariantFallback("stable", 3, "normal", "int8", "fp32")]
    assert rt.describe()["variant_fallbacks"] == [
        {"role": "stable", "version": 3, "priority": "normal", "configured": "int8",
         "served": "fp32"}]
