"""Dataset specs: one YAML file describes a user's data set; no code change needed.

A spec names the source, the target and its positive class, the column types, optional
sensitive columns, validation rules, the split seed and training settings. Columns the
spec does not list are ignored, so a change to them stops at the validation stage.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Metrics the model card computes, by which the gate and monitoring can judge a model.
Metric = Literal["roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"]
FairnessMetric = Literal["demographic_parity_difference", "equalized_odds_difference"]

# Bounds of a categorical column's vocabulary when the spec does not set them.
DEFAULT_MAX_CATEGORY_LENGTH = 200
DEFAULT_MAX_CATEGORIES = 1000


def one_line(text: str) -> str:
    """Collapse whitespace and line breaks, so a message stays one terminal line."""
    return " ".join(str(text).split())


def short_repr(value: Any, limit: int = 40) -> str:
    """A value as an example in a message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(str(value))} characters)"


class SpecError(ValueError):
    """A dataset spec that cannot be used: one line naming the file, field, rule and remedy."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    path: str = Field(min_length=1)
    format: Literal["csv", "parquet"] | None = None
    encoding: str = "utf-8"
    delimiter: str = Field(",", min_length=1, max_length=1)
    na_values: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "null", "None"])

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"source.encoding: {self.encoding!r} is not a text encoding Python "
                             "knows; use e.g. utf-8, latin-1 or cp1252") from None
        if self.delimiter in ('"', "\n", "\r"):
            raise ValueError(f"source.delimiter: {self.delimiter!r} cannot separate fields; "
                             "use e.g. ',', ';', '|' or a tab")
        return self

    @property
    def resolved_format(self) -> str:
        if self.format:
            return self.format
        suffix = Path(self.path.split("?")[0]).suffix.lower()
        return "parquet" if suffix in (".parquet", ".pq") else "csv"


class TargetSpec(_Strict):
    """The label column.

    Values outside ``classes`` fail the run (a contract change, not noisy rows); without
    ``classes`` the column must hold exactly two distinct values.
    """

    column: str = Field(min_length=1)
    positive: str | int | float
    classes: list[str | int | float] | None = None

    @model_validator(mode="after")
    def _check(self) -> TargetSpec:
        if self.classes is None:
            return self
        names = [str(c) for c in self.classes]
        if len(set(names)) < 2:
            raise ValueError(f"target.classes: lists {len(set(names))} distinct class(es) "
                             f"{names}; a binary model needs at least 2")
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"target.classes: {dupes} listed twice; list each class once")
        if str(self.positive) not in names:
            raise ValueError(f"target.positive: {self.positive!r} is not one of target.classes "
                             f"{names}; set it to the class the model predicts")
        return self

    def label_names(self) -> tuple[str, str]:
        """(positive, negative) labels as predictions name them (service and batch alike).

        The negative label is the other listed class, else ``not <positive>``.
        """
        positive = str(self.positive)
        negative = [str(c) for c in self.classes or [] if str(c) != positive]
        return positive, negative[0] if len(negative) == 1 else f"not {positive}"


class ColumnSpec(_Strict):
    """One feature column.

    ``max_length`` and ``max_categories`` bound a categorical column's vocabulary
    (defaults: ``validation.max_category_length`` and ``validation.max_categories``).
    """

    type: Literal["numeric", "categorical"]
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    max_null_fraction: float = Field(0.0, ge=0.0, le=1.0)
    max_length: int | None = Field(None, ge=1)
    max_categories: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> ColumnSpec:
        if self.type == "categorical" and (self.min is not None or self.max is not None):
            raise ValueError("min/max apply to numeric columns only")
        if self.type == "numeric" and (self.categories is not None or self.max_length is not None
                                       or self.max_categories is not None):
            raise ValueError("categories, max_length and max_categories apply to categorical "
                             "columns only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}); swap them")
        if self.categories is not None:
            if not self.categories:
                raise ValueError("categories is empty; list the allowed values or drop the key")
            dupes = sorted({c for c in self.categories if self.categories.count(c) > 1})
            if dupes:
                raise ValueError(f"categories lists {dupes} twice; list each value once")
        return self


class ValidationSpec(_Strict):
    max_failed_fraction: float = Field(0.05, ge=0.0, le=1.0)
    max_category_length: int = Field(DEFAULT_MAX_CATEGORY_LENGTH, ge=1)
    max_categories: int = Field(DEFAULT_MAX_CATEGORIES, ge=1)


class SplitSpec(_Strict):
    seed: int = 0
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> SplitSpec:
        if self.test_fraction + self.validation_fraction >= 1.0:
            raise ValueError(
                f"split: test_fraction ({self.test_fraction:g}) + validation_fraction "
                f"({self.validation_fraction:g}) leave no rows to train on; keep their sum "
                "below 1")
        return self


ModelParam = bool | int | float | str | list[int] | list[float]
# The builder gets these from the training settings, never from training.params.
BUILDER_SETTINGS = ("hidden", "dropout")


def _training_setting(params: dict[str, Any]) -> str | None:
    """The first of `BUILDER_SETTINGS` that ``params`` names, if any."""
    return next((name for name in BUILDER_SETTINGS if name in params), None)


class TrainingSpec(_Strict):
    # A built-in architecture (pipelines.architectures.BUILTIN), a function in a file of
    # the project ("models/my_net.py:build") or in a module ("package.module:build").
    model: str = Field(default_factory=lambda: _default_model())
    # Passed to the model's builder with hidden and dropout.
    params: dict[str, ModelParam] = Field(default_factory=dict)
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    patience: int = Field(5, ge=1)
    seed: int = 0
    reference_rows: int = Field(2000, ge=1)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        from pipelines.model_ref import ModelRef

        ModelRef.parse(value)
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = _training_setting(value)
        if taken:
            raise ValueError(f"{taken} is a training setting; set training.{taken} "
                             f"instead of training.params.{taken}")
        return value


class QuantizationSpec(_Strict):
    calibration_rows: int = Field(512, ge=1)
    int8_tolerance: float = Field(0.05, gt=0.0)
    fp16_tolerance: float = Field(0.01, gt=0.0)


class RangeSpec(_Strict):
    low: float
    high: float
    log: bool = False
    # Whole numbers only (a count such as a layer width); search_space.params only.
    integer: bool = False

    @model_validator(mode="after")
    def _check(self) -> RangeSpec:
        if self.high <= self.low:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g}); "
                             "to fix a value, set it under training and leave it out of tuning")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g}); raise low or "
                             "set log: false")
        return self


def _default_model() -> str:
    from pipelines.model_ref import DEFAULT

    return DEFAULT


class SearchSpaceSpec(_Strict):
    """Ranges searched by Optuna; each layer is half the width of the one before."""

    learning_rate: RangeSpec = RangeSpec(low=1e-4, high=1e-2, log=True)
    width: RangeSpec = RangeSpec(low=16, high=128, log=True)
    depth: RangeSpec = RangeSpec(low=1, high=3)
    dropout: RangeSpec = RangeSpec(low=0.0, high=0.4)
    weight_decay: RangeSpec = RangeSpec(low=1e-6, high=1e-2, log=True)
    epochs: RangeSpec = RangeSpec(low=10, high=40)
    # Ranges for the model's own training.params (a user model's, or plr_mlp's
    # frequency_scale); the value Optuna picks replaces training.params.<name>.
    params: dict[str, RangeSpec] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _own_params(cls, value: dict[str, RangeSpec]) -> dict[str, RangeSpec]:
        taken = _training_setting(value)
        if taken:
            raise ValueError(f"params.{taken}: a training setting, searched as width/depth "
                             f"or dropout here; remove it from search_space.params")
        return value

    @model_validator(mode="after")
    def _check(self) -> SearchSpaceSpec:
        # field: (lowest allowed low, bound that high must stay under)
        bounds = {"learning_rate": (None, None), "dropout": (0.0, 1.0),
                  "weight_decay": (0.0, None), "width": (1.0, None), "depth": (1.0, None),
                  "epochs": (1.0, None)}
        for name, (lowest, highest) in bounds.items():
            r: RangeSpec = getattr(self, name)
            if name == "learning_rate" and r.low <= 0:
                raise ValueError(f"{name}.low: a learning rate must be > 0 (got {r.low:g})")
            if lowest is not None and r.low < lowest:
                raise ValueError(f"{name}.low: must be >= {lowest:g} (got {r.low:g})")
            if highest is not None and r.high >= highest:
                raise ValueError(f"{name}.high: must be below {highest:g} (got {r.high:g})")
        return self


class TuningSpec(_Strict):
    """Hyperparameter search; ``n_trials: 0`` trains once with the ``training`` settings."""

    n_trials: int = Field(0, ge=0)
    timeout_s: float | None = Field(None, gt=0)
    pruner: Literal["median", "none"] = "median"
    seed: int = 0
    search_space: SearchSpaceSpec = SearchSpaceSpec()


class FairnessLimitSpec(_Strict):
    """A limit on a between-group difference: absolute, and/or relative to the champion."""

    absolute: float | None = Field(None, ge=0.0)
    relative: float | None = Field(None, ge=0.0)


class GateSpec(_Strict):
    """The deploy gate: quality floors, tolerances, fairness limits, lift over baselines."""

    min_metrics: dict[Metric, float] = Field(default_factory=lambda: {"roc_auc": 0.6})
    max_metrics: dict[Metric, float] = Field(default_factory=dict)
    tolerances: dict[Metric, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: {"roc_auc": 0.01, "log_loss": 0.02})
    fairness: dict[FairnessMetric, FairnessLimitSpec] = Field(default_factory=dict)
    # The least the candidate must beat the best scikit-learn baseline by, per metric (in
    # the metric's better direction; negative allows a shortfall); empty: not judged.
    min_lift_over_baseline: dict[Metric, float] = Field(default_factory=dict)
    min_group_size: int = Field(30, ge=1)
    bootstrap: int = Field(200, ge=0)
    seed: int = 0


class ModelCardSpec(_Strict):
    intended_use: str = "Not stated in the dataset spec."
    limitations: str = "Not stated in the dataset spec."


class CanarySpec(_Strict):
    """How a new model proves itself on live traffic before it replaces the stable one.

    ``share: 0`` deploys straight to stable. The canary is promoted once it has served
    ``min_requests`` with an error rate and p99 latency within the limits, and aborted as
    soon as its errors alone exceed what ``max_error_rate`` allows over ``min_requests``.
    """

    share: float = Field(0.1, ge=0.0, le=1.0)
    min_requests: int = Field(200, ge=1)
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)
    max_p99_latency_ms: float = Field(50.0, gt=0)


class EdgeSpec(_Strict):
    """Edge target: a folder or fsspec URI that gets int8 bundles (model + manifest)."""

    target: str = "${TIDELINE_HOME:-.tideline}/edge"
    max_bytes: int = Field(2_000_000, ge=1)


class ServingSpec(_Strict):
    """The inference service's behaviour (read when the service starts)."""

    variants: dict[Literal["high", "normal"], Literal["fp32", "int8", "fp16"]] = Field(
        default_factory=lambda: {"high": "fp32", "normal": "int8"})
    max_batch: int = Field(64, ge=1)
    max_wait_ms: float = Field(5.0, ge=0.0)
    max_records: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    rate_limit_per_minute: int = Field(6000, ge=1)
    log_retention_files: int = Field(1000, ge=1)
    log_flush_rows: int = Field(1000, ge=1)
    log_flush_seconds: float = Field(10.0, gt=0)


def check_cron(value: str | None, field: str) -> str | None:
    """A five-field cron expression (minute hour day month weekday), or None.

    Only the shape is checked here; Dagster checks each field when the schedule is built
    and that error is reported against the spec too.
    """
    if value is None:
        return None
    if len(value.split()) != 5:
        raise ValueError(f"{field}: {value!r} is not a cron expression of five fields "
                         "(minute hour day-of-month month day-of-week, e.g. '0 2 * * *'); "
                         "fix it, or set null to turn the schedule off")
    return value


class BatchSpec(_Strict):
    """Batch scoring: a table scored with the stable model into the store (Parquet).

    ``source`` is a local path (CSV or Parquet) or a ``lakefs://`` URI with the spec's
    columns; ``id_column`` names a column that identifies rows (else the row number);
    ``schedule`` is a cron expression for ``<model>_batch_job`` (null: only on demand).
    """

    source: str
    id_column: str | None = None
    schedule: str | None = None

    @model_validator(mode="after")
    def _check(self) -> BatchSpec:
        check_cron(self.schedule, "deployment.batch.schedule")
        return self


class DeploymentSpec(_Strict):
    canary: CanarySpec = CanarySpec()
    edge: EdgeSpec = EdgeSpec()
    batch: BatchSpec | None = None


DriftMethod = Literal["ks", "wasserstein", "psi", "chisquare", "jensenshannon"]


class DriftTestSpec(_Strict):
    """A drift test pinned with its threshold (never Evidently's size-dependent default).

    ``ks`` and ``chisquare`` report a p-value (drift when it is at or under the
    threshold); ``wasserstein`` (normed by the reference's std), ``psi`` and
    ``jensenshannon`` report a distance (drift when it is at or over the threshold).
    """

    method: DriftMethod
    threshold: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> DriftTestSpec:
        if self.method in ("ks", "chisquare") and self.threshold > 1:
            raise ValueError(f"threshold: {self.method} reports a p-value, so its threshold "
                             f"must be at most 1 (got {self.threshold:g}); e.g. 0.05")
        return self


class ColumnDriftSpec(_Strict):
    method: DriftMethod | None = None
    threshold: float | None = Field(None, gt=0)
    weight: float = Field(1.0, ge=0)


class MonitoringSpec(_Strict):
    """Drift and production-performance monitoring, and when they trigger retraining."""

    numeric: DriftTestSpec = DriftTestSpec(method="wasserstein", threshold=0.1)
    categorical: DriftTestSpec = DriftTestSpec(method="jensenshannon", threshold=0.1)
    columns: dict[str, ColumnDriftSpec] = Field(default_factory=dict)
    drift_threshold: float = Field(0.3, gt=0, le=1)
    consecutive_batches: int = Field(2, ge=1)
    min_batch_rows: int = Field(200, ge=1)
    evidently_max_rows: int = Field(100_000, ge=1)
    performance_floor: dict[Metric, float] = Field(default_factory=lambda: {"roc_auc": 0.7})
    min_labelled_rows: int = Field(100, ge=1)
    cooldown_minutes: float = Field(60.0, ge=0)
    include_labelled_rows: bool = True
    alert_webhook: str = "${TIDELINE_ALERT_WEBHOOK:-}"


class ResourcesSpec(_Strict):
    # Memory the stages may use for data (e.g. "4GB", "512MiB"); unset: half of the
    # machine's (or container's) memory. Larger tables are read, validated, scored and
    # trained in batches; results are the same whatever the budget, so it is in no key.
    memory_budget: ByteSize | None = Field(None, gt=0)


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    # The nightly run of this model's chain (cron, UTC); null turns it off.
    schedule: str | None = "0 2 * * *"
    source: SourceSpec
    target: TargetSpec
    columns: dict[str, ColumnSpec]
    sensitive: list[str] = Field(default_factory=list)
    validation: ValidationSpec = ValidationSpec()
    split: SplitSpec = SplitSpec()
    training: TrainingSpec = TrainingSpec()
    quantization: QuantizationSpec = QuantizationSpec()
    tuning: TuningSpec = TuningSpec()
    gate: GateSpec = GateSpec()
    model_card: ModelCardSpec = ModelCardSpec()
    deployment: DeploymentSpec = DeploymentSpec()
    serving: ServingSpec = ServingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    resources: ResourcesSpec = ResourcesSpec()

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        check_cron(self.schedule, "schedule")
        if not self.columns:
            raise ValueError("columns: list at least one feature column")
        if self.target.column in self.columns:
            raise ValueError(f"columns.{self.target.column}: the target column must not be "
                             "listed in columns; remove it there (target.column names it)")
        unknown = [c for c in self.sensitive if c not in self.columns]
        if unknown:
            raise ValueError(f"sensitive columns {unknown} are not listed in columns; "
                             "list them under columns or remove them from sensitive")
        unknown = [c for c in self.monitoring.columns if c not in self.columns]
        if unknown:
            raise ValueError(f"monitoring.columns {unknown} are not listed in columns; "
                             "list them under columns or remove them from monitoring.columns")
        for col, cs in self.columns.items():
            if cs.categories is None:
                continue
            limit = self.category_limits(col)[0]
            long = [c for c in cs.categories if len(c) > limit]
            if long:
                raise ValueError(
                    f"columns.{col}.categories: {len(long)} listed value(s) are longer than "
                    f"max_length {limit} characters (e.g. {short_repr(long[0])}); shorten them or "
                    f"raise columns.{col}.max_length")
        return self

    def category_limits(self, column: str) -> tuple[int, int]:
        """(longest value in characters, most distinct values) of a categorical column.

        The column's own ``max_length``/``max_categories``, else the spec's ``validation``
        defaults.
        """
        cs = self.columns[column]
        return (cs.max_length or self.validation.max_category_length,
                cs.max_categories or self.validation.max_categories)

    @property
    def numeric_columns(self) -> list[str]:
        return [c for c, s in self.columns.items() if s.type == "numeric"]

    @property
    def categorical_columns(self) -> list[str]:
        return [c for c, s in self.columns.items() if s.type == "categorical"]

    def stage_config(self, stage: str) -> dict[str, Any]:
        """The settings that shape one stage's output (they enter its recipe key).

        Only those: settings that steer when or where things happen (alert webhooks,
        cooldowns, schedules, serving, deployment, paths) never re-key a stage. A few
        settings that decide a stage's recorded verdict (drift and performance thresholds)
        count too, since a cache hit re-emits that verdict.
        """
        dump = self.model_dump(mode="json")
        names = list(self.columns)
        mon = dump["monitoring"]
        if stage == "raw_data":
            config: dict[str, Any] = {"format": self.source.resolved_format}
            if self.monitoring.include_labelled_rows:  # labelled rows in the source's shape
                config["labelled_rows"] = {"columns": names, "target": self.target.column}
            return config
        if stage == "validated_features":
            source = {k: v for k, v in dump["source"].items() if k != "path"}
            source["format"] = self.source.resolved_format
            return {k: dump[k] for k in ("target", "columns", "validation", "split")} | {
                "source": source
            }
        if stage == "trained_weights":
            from pipelines.model_ref import code_hash

            # A user model's code is part of the recipe: editing its file re-keys training.
            return {"training": dump["training"], "tuning": dump["tuning"], "columns": names,
                    "model_code": code_hash(self.training.model)}
        if stage == "quantized_weights":
            return {"quantization": dump["quantization"]}
        if stage == "model_card":
            return {k: dump[k] for k in ("name", "description", "model_card", "sensitive",
                                         "gate")} | {
                "target": {"column": self.target.column, "positive": str(self.target.positive)},
                "columns": names}
        if stage == "drift_report":
            return {"monitoring": {k: mon[k] for k in ("numeric", "categorical", "columns",
                                                       "drift_threshold",
                                                       "evidently_max_rows")},
                    "columns": {c: col.type for c, col in self.columns.items()}}
        if stage == "production_performance":
            return {"monitoring": {k: mon[k] for k in ("performance_floor",
                                                       "min_labelled_rows")},
                    "positive": str(self.target.positive)}
        if stage == "batch_predictions":
            # The table's path, the schedule and the model are not here: the table's
            # content hash, the stable model's files and version are the stage's inputs.
            batch = self.deployment.batch
            reader = {k: dump["source"][k] for k in ("encoding", "delimiter", "na_values")}
            fmt = SourceSpec.model_construct(path=batch.source).resolved_format if batch else None
            return {"source": reader | {"format": fmt},
                    "id_column": batch.id_column if batch else None,
                    "target": {"positive": str(self.target.positive),
                               "classes": dump["target"]["classes"]},
                    "max_failed_fraction": self.validation.max_failed_fraction}
        raise KeyError(stage)


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset variable without default fails."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is None:
                raise SpecError(f"environment variable {name} is not set (used in the spec); "
                                f"set it, or give a default as ${{{name}:-default}}")
            return default
        return value

    return _ENV.sub(sub, text)


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_SUBFIELD = re.compile(r"^([A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*): (.*)$", re.S)
_TOP_FIELDS = {"name", "description", "source", "target", "columns", "sensitive", "validation",
               "split", "training", "quantization", "tuning", "gate", "model_card",
               "deployment", "serving", "monitoring", "resources"}


def _rephrase(error: dict[str, Any]) -> str:
    """One pydantic error as ``field: rule (got value)``, in the spec's own words."""
    kind, msg = error["type"], error["msg"]
    loc = tuple(error["loc"])
    key = loc[-1:] == ("[key]",)
    field = _field(loc[:-2] if key else loc)
    if kind == "value_error":
        # Our own validators: the message may start with the field it is about, relative
        # to where the validator sits (``threshold: ...``) or from the top (``target.x: ...``).
        msg = msg.removeprefix("Value error, ")
        match = _SUBFIELD.match(msg)
        if match and match.group(1).split(".")[0] in _TOP_FIELDS:
            return msg
        if match and field:
            return f"{field}.{match.group(1)}: {match.group(2)}"
        return f"{field}: {msg}" if field else msg
    if kind == "missing":
        msg = "is required; add it"
    elif kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        msg = ("is not a field of the spec; check its spelling and where it is nested"
               if allowed is None else
               f"is not a field there; the fields of {_field(loc[:-1]) or 'a spec'} are: "
               f"{', '.join(allowed)}")
    else:
        for start in ("Input should", "String should", "List should", "Dictionary should"):
            msg = msg.replace(start, "must" if not key else "each key must")
        got = error.get("input")
        if isinstance(got, (str, int, float, bool)) or got is None:
            msg += f" (got {short_repr(got)})"
    return f"{field}: {msg}" if field else msg


def _fields_at(loc: tuple[Any, ...]) -> list[str] | None:
    """The field names the spec allows at ``loc`` (a pydantic error location).

    None when ``loc`` does not lead to a block of settings.
    """
    import types
    import typing

    model: Any = DatasetSpec
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            info = model.model_fields.get(str(part))
            if info is None:
                return None
            model = info.annotation
        elif typing.get_origin(model) is dict:  # a key of a mapping: its values' type
            model = typing.get_args(model)[1]
        else:
            return None
        if typing.get_origin(model) in (typing.Union, types.UnionType):
            blocks = [a for a in typing.get_args(model)
                      if isinstance(a, type) and issubclass(a, BaseModel)]
            model = blocks[0] if len(blocks) == 1 else model
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return None


# What a block of the spec looks like, for the message when it is given as something else.
_BLOCK_EXAMPLES = {
    "source": "source: {path: data/my_table.csv, format: csv}",
    "deployment": "deployment: {edge: {target: edge/}}",
    "edge": "deployment: {edge: {target: edge/}}",
    "monitoring": "monitoring: {drift_threshold: 0.3}",
}


def _block(raw: dict[str, Any], name: str, prefix: str = "") -> dict[str, Any]:
    """A nested block of the spec as a dict (empty when absent).

    Raises:
        SpecError: the block is given as something other than a mapping (``source:
            data.csv``), naming the field, what was given and the shape wanted
            (`load_spec` adds the file).
    """
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(
            f"field {prefix}{name} must be a mapping of settings, not "
            f"{type(value).__name__} {short_repr(value)}; write it as e.g. "
            f"`{_BLOCK_EXAMPLES[name]}`")
    return dict(value)


def load_spec(path: str | Path) -> DatasetSpec:
    """Load and validate a dataset spec, with every value rule checked here.

    Raises:
        SpecError: one line naming the file, each field that is wrong, the rule it
            breaks and what to do.
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        raise SpecError(f"dataset spec {path} is a directory; pass a .yaml spec file, or a "
                        "spec's name for datasets/<name>.yaml")
    if not path.is_file():
        raise SpecError(f"dataset spec {path} does not exist; pass the path of a .yaml spec "
                        "file, or a spec's name for datasets/<name>.yaml")
    try:
        # The C loader when PyYAML has it: parsing is most of the cost of loading many specs.
        raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"dataset spec {path} is not valid YAML{where}: {problem}; fix the "
                        "indentation or quoting there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"dataset spec {path} cannot be read ({exc}); check its permissions "
                        "and that it is UTF-8 text") from None
    if not isinstance(raw, dict):
        raise SpecError(f"dataset spec {path} must be a mapping of fields (name, source, "
                        f"target, columns, ...), not {type(raw).__name__}; see "
                        "datasets/adult.yaml for the layout")
    try:
        source = _block(raw, "source")
        if "path" in source:
            source["path"] = expand_env(str(source["path"]))
        raw["source"] = source
        deployment = _block(raw, "deployment")
        edge = _block(deployment, "edge", "deployment.")
        edge["target"] = expand_env(str(edge.get("target", EdgeSpec().target)))
        raw["deployment"] = deployment | {"edge": edge}
        if isinstance(deployment.get("batch"), dict) and "source" in deployment["batch"]:
            batch = dict(deployment["batch"])
            batch["source"] = expand_env(str(batch["source"]))
            raw["deployment"]["batch"] = batch
        monitoring = _block(raw, "monitoring")
        monitoring["alert_webhook"] = expand_env(
            str(monitoring.get("alert_webhook", MonitoringSpec().alert_webhook)))
        raw["monitoring"] = monitoring
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(dict.fromkeys(_rephrase(e) for e in exc.errors()))
        raise SpecError(f"dataset spec {path}: {problems}; fix "
                        f"{'this field' if exc.error_count() == 1 else 'these fields'} in "
                        f"{path.name}") from None
    except SpecError as exc:
        raise SpecError(f"dataset spec {path}: {exc}") from None


def resolve_spec_path(name_or_path: str, datasets_dir: Path) -> Path:
    """A spec given by name (``adult``) resolves to ``datasets/adult.yaml``."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return datasets_dir / f"{name_or_path}.yaml"
