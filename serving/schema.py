"""Request and response models, built from the dataset spec's columns.

Every feature column is a required field (``null`` is allowed and means missing: the
model imputes it as in training); unknown fields are refused, so a misspelt column name
is an error rather than a silently imputed value. Numbers must be finite and within
float32 range.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

FLOAT32_MAX = 3.4e38


def record_model(numeric: list[str], categorical: list[str]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for i, col in enumerate(numeric):
        fields[f"n{i}"] = (Annotated[float | None, Field(
            alias=col, strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX,
            description=f"numeric feature {col!r}; null if missing")], ...)
    for i, col in enumerate(categorical):
        fields[f"c{i}"] = (Annotated[str | None, Field(
            alias=col, strict=True, max_length=1000,
            description=f"categorical feature {col!r}; null if missing; unseen values are "
                        "treated as unknown by the model")], ...)
    return create_model("Record", __config__=ConfigDict(extra="forbid"), **fields)


def request_model(record: type[BaseModel], max_records: int) -> type[BaseModel]:
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid"),
        records=(Annotated[list[record], Field(  # type: ignore[valid-type]
            min_length=1, max_length=max_records,
            description=f"one to {max_records} raw records")], ...))


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
