"""Open Inference Protocol v2 (KServe, Triton, MLServer): its JSON bodies, mapped to records.

An inference request carries one columnar tensor per feature column, named after it:
numeric columns as ``FP32`` (``FP64`` and integer types are taken too), categorical ones
as ``BYTES`` (JSON strings), each of shape ``[n]`` (or ``[n, 1]``), all of the same
length ``n``; ``null`` is a missing value, as in ``/predict``. The reply has two outputs,
``probability`` (FP32) and ``label`` (BYTES).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from pipelines.spec import short_repr
from serving.config import ModelConfig
from serving.schema import FLOAT32_MAX, MAX_CATEGORY_CHARS, RAW_VALUE_SCHEMA

NUMERIC_TYPES = ("FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16",
                 "UINT32", "UINT64")
OUTPUTS = ("probability", "label")

_Data = Annotated[list[Any], WithJsonSchema({
    "type": "array",
    "items": RAW_VALUE_SCHEMA,
    "description": "the tensor's values, row-major (nested lists are flattened)"})]


class InferError(ValueError):
    """A request that does not fit the model's inputs (answered 400, naming the input)."""


class RequestInput(BaseModel):
    name: str = Field(description="a feature column of the model")
    shape: list[int] = Field(description="[n] (or [n, 1]): one value per record")
    datatype: str = Field(description="FP32 for numeric columns, BYTES for categorical ones")
    parameters: dict[str, Any] | None = None
    data: _Data


class RequestOutput(BaseModel):
    name: str = Field(description="probability or label")
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = Field(None, description="echoed in the reply; the prediction log's "
                                             "request_id (labels join on it)")
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(
        None, description="the outputs to return (default: probability and label)")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float] | list[str]


class InferResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str | None
    id: str
    parameters: dict[str, Any] = Field(description="variant and role that answered")
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = Field(
        None, description="for a categorical input: the values its spec allows (categories) "
                          "and those the stable version saw in training (known_values; any "
                          "other value is treated as unknown)")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


def metadata(config: ModelConfig, versions: list[str],
             known: Mapping[str, Sequence[str]] | None = None) -> ModelMetadata:
    """The model's inputs and outputs; ``known``: each categorical input's training values."""
    inputs = [TensorMetadata(name=c, datatype="FP32", shape=[-1]) for c in config.numeric]
    for c in config.categorical:
        parameters: dict[str, Any] = {}
        allowed = config.categories_of(c)
        if allowed:
            parameters["categories"] = list(allowed)
        if known and c in known:
            parameters["known_values"] = list(known[c])
        inputs.append(TensorMetadata(name=c, datatype="BYTES", shape=[-1],
                                     parameters=parameters or None))
    return ModelMetadata(name=config.name, versions=versions, platform="onnx", inputs=inputs,
                         outputs=[TensorMetadata(name="probability", datatype="FP32",
                                                 shape=[-1]),
                                  TensorMetadata(name="label", datatype="BYTES", shape=[-1])])


def _flatten(name: str, data: list[Any], depth: int = 0) -> list[Any]:
    out: list[Any] = []
    for value in data:
        if isinstance(value, list):
            if depth >= 1:
                raise InferError(f"input {name!r}: data is nested deeper than its shape [n, 1] "
                                 "allows; send one value per record")
            out.extend(_flatten(name, value, depth + 1))
        else:
            out.append(value)
    return out


def _values(config: ModelConfig, tensor: RequestInput) -> list[Any]:
    name, numeric = tensor.name, tensor.name in config.numeric
    want = "FP32" if numeric else "BYTES"
    if (tensor.datatype not in NUMERIC_TYPES) if numeric else (tensor.datatype != "BYTES"):
        kind = "numeric" if numeric else "categorical"
        raise InferError(f"input {name!r} has datatype {short_repr(tensor.datatype)}; it is "
                         f"{kind}: send datatype {want}")
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
        raise InferError(f"input {name!r} has shape {shape}; send [n] (or [n, 1]): one value "
                         "per record")
    values = _flatten(name, tensor.data)
    if len(values) != shape[0]:
        raise InferError(f"input {name!r}: shape {shape} holds {shape[0]} values but data has "
                         f"{len(values)}; make them agree")
    for i, v in enumerate(values):
        if v is None:
            continue
        if numeric:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InferError(f"input {name!r} data[{i}]: {short_repr(v)} is not a number "
                                 "(send null for a missing value)")
            if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
                raise InferError(f"input {name!r} data[{i}]: {short_repr(v)} is not a finite "
                                 "FP32 value")
        elif not isinstance(v, str):
            raise InferError(f"input {name!r} data[{i}]: {short_repr(v)} is not a string "
                             "(BYTES values are JSON strings; null for a missing value)")
        elif len(v) > MAX_CATEGORY_CHARS:
            raise InferError(f"input {name!r} data[{i}]: {len(v)} characters is over the "
                             f"limit of {MAX_CATEGORY_CHARS}")
    return [float(v) if numeric and v is not None else v for v in values]


def to_records(config: ModelConfig, request: InferRequest) -> list[dict[str, Any]]:
    """The raw records a request's columnar tensors hold.

    Raises:
        InferError: naming the input and what is wrong with it.
    """
    given = [t.name for t in request.inputs]
    twice = sorted({n for n in given if given.count(n) > 1})
    if twice:
        raise InferError(f"input {twice[0]!r} is given more than once; send each input once")
    unknown = [n for n in given if n not in config.columns]
    if unknown:
        raise InferError(f"unknown input {short_repr(unknown[0])}: model {config.name!r} takes "
                         f"{', '.join(config.columns)} (GET /v2/models/{config.name})")
    missing = [c for c in config.columns if c not in given]
    if missing:
        raise InferError(f"missing input(s) {', '.join(missing)} of model {config.name!r}: send "
                         "every feature column (null values for missing ones)")
    columns = {t.name: _values(config, t) for t in request.inputs}
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        counts = ", ".join(f"{n} {len(v)}" for n, v in columns.items())
        raise InferError(f"inputs have different lengths ({counts}); every input holds one "
                         "value per record")
    n = lengths.pop()
    limit = config.serving.max_records
    if not 1 <= n <= limit:
        raise InferError(f"{n} records: send 1 to {limit} per request (serving.max_records of "
                         f"model {config.name!r}); split larger ones")
    return [{c: columns[c][i] for c in config.columns} for i in range(n)]


def requested_outputs(request: InferRequest) -> list[str]:
    if not request.outputs:
        return list(OUTPUTS)
    names = [o.name for o in request.outputs]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise InferError(f"unknown output {short_repr(unknown[0])}: the outputs are "
                         f"{', '.join(OUTPUTS)}")
    return list(dict.fromkeys(names))


def infer_response(model: str, request_id: str, version: int | None, variant: str, role: str,
                   probabilities: list[float], labels: list[str],
                   outputs: list[str]) -> InferResponse:
    n = len(probabilities)
    tensors = {"probability": ResponseOutput(name="probability", shape=[n], datatype="FP32",
                                             data=probabilities),
               "label": ResponseOutput(name="label", shape=[n], datatype="BYTES", data=labels)}
    return InferResponse(model_name=model, model_version=None if version is None
                         else str(version), id=request_id,
                         parameters={"variant": variant, "role": role},
                         outputs=[tensors[o] for o in outputs])
