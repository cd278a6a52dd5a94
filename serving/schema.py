"""Request and response models, built from each dataset spec's columns.

Every feature column is a required field (``null`` is allowed and means missing: the
model imputes it as in training); unknown fields are refused, so a misspelt column name
is an error rather than a silently imputed value. Numbers must be finite and within
float32 range.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

FLOAT32_MAX = 3.4e38
MAX_CATEGORY_CHARS = 1000


def record_model(numeric: list[str], categorical: list[str]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for i, col in enumerate(numeric):
        fields[f"n{i}"] = (Annotated[float | None, Field(
            alias=col, strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX,
            description=f"numeric feature {col!r}; null if missing")], ...)
    for i, col in enumerate(categorical):
        fields[f"c{i}"] = (Annotated[str | None, Field(
            alias=col, strict=True, max_length=MAX_CATEGORY_CHARS,
            description=f"categorical feature {col!r}; null if missing; unseen values are "
                        "treated as unknown by the model")], ...)
    return create_model("Record", __config__=ConfigDict(extra="forbid"), **fields)


def request_model(record: type[BaseModel], max_records: int) -> type[BaseModel]:
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid"),
        records=(Annotated[list[record], Field(  # type: ignore[valid-type]
            min_length=1, max_length=max_records,
            description=f"one to {max_records} raw records")], ...))


# A raw value as sent; the model's own record schema checks it after the model is known.
RAW_VALUE_SCHEMA = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]}
_RawValue = Annotated[Any, WithJsonSchema(RAW_VALUE_SCHEMA)]


class AnyModelRequest(BaseModel):
    """``/v2/models/{name}/predict``: the records of ``/predict``, for any model.

    They are checked against the model the path names (its feature columns, as
    ``GET /v2/models/{name}`` lists them).
    """

    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, _RawValue]] = Field(
        min_length=1, description="one or more raw records (serving.max_records at most)")


class Prediction(BaseModel):
    probability: float = Field(description="probability of the positive class")
    label: str


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    model_version: int | None
    variant: str
    role: Literal["stable", "canary"]
    predictions: list[Prediction]


class ErrorDetail(BaseModel):
    field: str
    error: str


class ErrorResponse(BaseModel):
    error: str
    detail: list[ErrorDetail] = Field(default_factory=list)
