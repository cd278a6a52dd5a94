"""ONNX export of the whole predictor: raw records in, probability of the positive class out.

Numeric columns enter as one float matrix ``numeric`` (NaN = missing; imputation and
scaling happen inside the graph); each categorical column enters as a string tensor
``cat_<i>`` mapped to indices by ONNX-ML label encoders merged in front of the network.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx
    import torch

OPSET = 18
ML_OPSET = 3
OUTPUT = "probability"


def _network_proto(model: torch.nn.Module, n_num: int, n_cat: int) -> onnx.ModelProto:
    import onnx
    import torch

    class Predictor(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, numeric: torch.Tensor, *cat: torch.Tensor) -> torch.Tensor:
            idx = torch.cat(cat, dim=1) if cat else None
            return torch.sigmoid(self.net(numeric, idx))

    args: tuple[torch.Tensor, ...] = (torch.zeros(2, n_num),) + tuple(
        torch.zeros(2, 1, dtype=torch.int64) for _ in range(n_cat))
    names = ["numeric"] + [f"cat_idx_{i}" for i in range(n_cat)]
    dynamic = {name: {0: "batch"} for name in names} | {OUTPUT: {0: "batch"}}
    buf = io.BytesIO()
    torch.onnx.export(
        Predictor().eval(), args, buf, input_names=names, output_names=[OUTPUT],
        dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, external_data=False,
    )
    return onnx.load_from_string(buf.getvalue())


def _label_encoder_proto(vocabularies: dict[str, list[str]]) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    nodes, inputs, outputs = [], [], []
    for i, vocab in enumerate(vocabularies.values()):
        inputs.append(helper.make_tensor_value_info(f"cat_{i}", TensorProto.STRING, ["batch", 1]))
        outputs.append(
            helper.make_tensor_value_info(f"cat_idx_{i}", TensorProto.INT64, ["batch", 1]))
        nodes.append(helper.make_node(
            "LabelEncoder", [f"cat_{i}"], [f"cat_idx_{i}"], domain="ai.onnx.ml",
            keys_strings=list(vocab), values_int64s=list(range(1, len(vocab) + 1)),
            default_int64=0, name=f"encode_cat_{i}",
        ))
    graph = helper.make_graph(nodes, "encode_categories", inputs, outputs)
    return helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)])


def _dedupe_opsets(model: onnx.ModelProto) -> None:
    # merge_models can list a domain twice; quantization tools reject that.
    seen: dict[str, int] = {}
    for op in model.opset_import:
        seen[op.domain] = max(seen.get(op.domain, 0), op.version)
    del model.opset_import[:]
    for domain, version in sorted(seen.items()):
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, version


def export_predictor(model: torch.nn.Module, params: dict[str, Any],
                     precision: str = "fp32") -> bytes:
    """Serialise the predictor with its preprocessing as one self-contained ONNX model.

    With ``precision="fp16"`` the network after the preprocessing runs in half precision
    while imputation and scaling stay in fp32: raw values such as 99,999 overflow fp16.
    """
    import copy

    import onnx
    from onnx import compose

    if precision == "fp16":
        model = copy.deepcopy(model)
        model.body.half()
        for module in model.body.modules():
            if getattr(module, "keep_fp32", False):  # e.g. periodic embeddings' phases
                module.float()
    n_num, vocabs = len(params["numeric"]), params["categorical"]
    net = _network_proto(model, n_num, len(vocabs))
    if vocabs:
        pre = _label_encoder_proto(vocabs)
        net.ir_version = pre.ir_version = min(net.ir_version, pre.ir_version)
        for op in pre.opset_import:
            if op.domain == "ai.onnx.ml" and not any(
                    o.domain == "ai.onnx.ml" for o in net.opset_import):
                net.opset_import.add(domain="ai.onnx.ml", version=ML_OPSET)
        io_map = [(f"cat_idx_{i}", f"cat_idx_{i}") for i in range(len(vocabs))]
        net = compose.merge_models(pre, net, io_map=io_map)
    _dedupe_opsets(net)
    net.producer_name, net.producer_version = "tideline", ""
    onnx.checker.check_model(net)
    return net.SerializeToString()
