"""Request and response models, built from each dataset spec's columns.

Every feature column is a required field (``null`` is allowed and means missing: the
model imputes it as in training); unknown fields are refused, so a misspelt column name
is an error rather than a silently imputed value. Numbers must be finite and within
float32 range.

A categorical field takes any string: a value the model did not see in training is
treated as unknown, like a missing one. Its schema lists the values the served model did
see (:class:`KnownValues`), as ``examples`` and ``x-tideline-known-values`` rather than an
``enum``, which would tell clients that other values are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

FLOAT32_MAX = 3.4e38
MAX_CATEGORY_CHARS = 1000
# At most this many known values of a column are listed in the OpenAPI document (a
# vocabulary may hold thousands); GET /v2/models/{name} lists them all.
MAX_LISTED_VALUES = 50
EXAMPLE_VALUES = 3
KNOWN_VALUES_KEY = "x-tideline-known-values"


@dataclass
class KnownValues:
    """Each categorical column's values in the training vocabulary of a model's stable version.

    Empty until a version is loaded (or when its deployment record does not say); the
    runtime replaces it on each reload, and the record schema reads it whenever the
    OpenAPI document is generated.
    """

    model: str
    version: int | None = None
    source: str | None = None  # trained_weights of the version the values are from
    by_column: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def update(self, version: int | None, source: str,
               by_column: dict[str, tuple[str, ...]] | None) -> None:
        self.version, self.source, self.by_column = version, source, dict(by_column or {})

    def describe(self, column: str, schema: dict[str, Any]) -> None:
        """Add ``column``'s known values to its JSON schema (a pydantic ``json_schema_extra``)."""
        values = self.by_column.get(column)
        if values is None:
            return
        who = f"version {self.version}" if self.version is not None else "the stable version"
        unknown = "any other value is accepted and treated as unknown, like a missing one"
        base = f"categorical feature {column!r}; null if missing. "
        if not values:
            schema["description"] = (base + f"The model ({who}) saw no value of it in "
                                            "training: every value is treated as unknown.")
            return
        listed = values[:MAX_LISTED_VALUES]
        quoted = ", ".join(json.dumps(v, ensure_ascii=False) for v in listed)
        if len(values) > len(listed):
            seen = (f"The model ({who}) saw {len(values)} values in training; the first "
                    f"{len(listed)} (sorted) are listed here and in {KNOWN_VALUES_KEY}, all of "
                    f"them in GET /v2/models/{self.model}: {quoted}")
        else:
            seen = (f"The model ({who}) saw {len(values)} value"
                    f"{'s' if len(values) != 1 else ''} in training: {quoted}")
        schema["description"] = f"{base}{seen}; {unknown}."
        schema["examples"] = list(values[:EXAMPLE_VALUES])
        schema[KNOWN_VALUES_KEY] = list(listed)


def record_model(numeric: list[str], categorical: list[str],
                 known: KnownValues | None = None) -> type[BaseModel]:
    """The schema of one raw record; ``known`` fills in the categorical values when set."""
    fields: dict[str, Any] = {}
    for i, col in enumerate(numeric):
        fields[f"n{i}"] = (Annotated[float | None, Field(
            alias=col, strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX,
            description=f"numeric feature {col!r}; null if missing")], ...)
    for i, col in enumerate(categorical):
        fields[f"c{i}"] = (Annotated[str | None, Field(
            alias=col, strict=True, max_length=MAX_CATEGORY_CHARS,
            description=f"categorical feature {col!r}; null if missing; values not seen in "
                        "training are treated as unknown by the model",
            json_schema_extra=None if known is None else partial(known.describe, col))], ...)
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
