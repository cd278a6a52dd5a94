"""Dataset specs: one YAML file describes a user's data set; no code change needed.

A spec names the source, the target and its positive class, the column types, optional
sensitive columns, validation rules, the split seed and training settings. Columns the
spec does not list are ignored, so a change to them stops at the validation stage.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

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
    # Each field's docstring is its description: in the JSON Schema editors read
    # (datasets/spec.schema.json) and in docs/spec-reference.md (both from `make schema`).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SourceSpec(_Strict):
    """Where the data set's table is and how to read it."""

    path: str = Field(min_length=1)
    """The table: a CSV or Parquet file, or an fsspec/lakeFS URI; `${VAR}` and
    `${VAR:-default}` are expanded."""
    format: Literal["csv", "parquet"] | None = None
    """The file format; null guesses from the suffix (.parquet/.pq: parquet, else csv)."""
    encoding: str = "utf-8"
    """The text encoding of a CSV file (any Python codec name: utf-8, latin-1, cp1252)."""
    delimiter: str = Field(",", min_length=1, max_length=1)
    """The one character that separates a CSV file's fields (e.g. `;`, `|`, a tab)."""
    na_values: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "null", "None"])
    """Cell values read as missing."""
    duplicate_columns: Literal["error", "keep_first", "keep_identical"] = "error"
    """A header naming a column twice: `error` refuses the file, `keep_first` uses the first
    repeat, `keep_identical` keeps one when all repeats hold the same values (else fails)."""

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
    """The column of the source that holds the label."""
    positive: str | int | float
    """The label value the model predicts the probability of (the positive class)."""
    classes: list[str | int | float] | None = None
    """Every label value allowed (others fail the run); null: exactly two distinct values."""

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
    """How the model reads the column: numbers, or labels from a vocabulary."""
    min: float | None = None
    """Numeric only: the smallest valid value; a row below it is quarantined."""
    max: float | None = None
    """Numeric only: the largest valid value; a row above it is quarantined."""
    categories: list[str] | None = None
    """Categorical only: the values allowed; a row with another value is quarantined."""
    max_null_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """The largest share of missing values the column may have before the run fails."""
    max_length: int | None = Field(None, ge=1)
    """Categorical only: the longest value in characters (null: validation's default)."""
    max_categories: int | None = Field(None, ge=1)
    """Categorical only: the most distinct values (null: validation's default)."""

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
    """How much bad data a run tolerates before it fails."""

    max_failed_fraction: float = Field(0.05, ge=0.0, le=1.0)
    """The largest share of rows that may be quarantined (break a row rule) in a run."""
    max_category_length: int = Field(DEFAULT_MAX_CATEGORY_LENGTH, ge=1)
    """Every categorical column's longest value in characters; longer values quarantine
    their row."""
    max_categories: int = Field(DEFAULT_MAX_CATEGORIES, ge=1)
    """Every categorical column's most distinct values among kept rows; more fail the run."""


class SplitSpec(_Strict):
    """How the rows are split into training, validation and test sets."""

    seed: int = 0
    """The seed of the split; the same seed and rows give the same split."""
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    """The share of rows held out to test the model (and judge it at the gate)."""
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    """The share of rows used for early stopping and tuning."""

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
    """The network and how it is trained (the settings of a single training run)."""

    model: str = Field(default_factory=lambda: _default_model())
    """A built-in architecture (`plr_mlp`, `mlp`, `plr_ensemble`), a builder in a project
    file (`models/my_net.py:build`) or in a module (`package.module:build`)."""
    params: dict[str, ModelParam] = Field(default_factory=dict)
    """The model's own settings, passed to its builder with hidden and dropout."""
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64, 32])
    """The width of each hidden layer, first to last."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """The dropout rate after each hidden layer."""
    learning_rate: float = Field(1e-3, gt=0.0)
    """The optimiser's (AdamW) learning rate."""
    weight_decay: float = Field(1e-4, ge=0.0)
    """The optimiser's weight decay."""
    epochs: int = Field(30, ge=1)
    """The most passes over the training rows."""
    batch_size: int = Field(256, ge=1)
    """Rows per optimiser step."""
    patience: int = Field(5, ge=1)
    """Epochs without improvement on the validation rows before training stops early."""
    seed: int = 0
    """The seed of weight initialisation and batch order."""
    reference_rows: int = Field(2000, ge=1)
    """Training rows kept with the model as the reference that drift is measured against."""

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
    """The smaller variants of the model (int8, fp16) and how far they may drift from fp32."""

    calibration_rows: int = Field(512, ge=1)
    """Training rows used to calibrate int8 quantization."""
    int8_tolerance: float = Field(0.05, gt=0.0)
    """The largest difference allowed between int8 and fp32 probabilities on test rows."""
    fp16_tolerance: float = Field(0.01, gt=0.0)
    """The largest difference allowed between fp16 and fp32 probabilities on test rows."""


class RangeSpec(_Strict):
    """A range Optuna searches."""

    low: float
    """The lowest value tried."""
    high: float
    """The highest value tried (above low)."""
    log: bool = False
    """Sample on a log scale (for rates and decays spanning orders of magnitude)."""
    integer: bool = False
    """Whole numbers only (a count such as a layer width); search_space.params only."""

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
    """The learning rates tried."""
    width: RangeSpec = RangeSpec(low=16, high=128, log=True)
    """The widths of the first hidden layer tried."""
    depth: RangeSpec = RangeSpec(low=1, high=3)
    """The numbers of hidden layers tried."""
    dropout: RangeSpec = RangeSpec(low=0.0, high=0.4)
    """The dropout rates tried."""
    weight_decay: RangeSpec = RangeSpec(low=1e-6, high=1e-2, log=True)
    """The weight decays tried."""
    epochs: RangeSpec = RangeSpec(low=10, high=40)
    """The epoch counts tried."""
    params: dict[str, RangeSpec] = Field(default_factory=dict)
    """Ranges for the model's own training.params (e.g. plr_mlp's frequency_scale); the
    value tried replaces training.params.<name>."""

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
    """How many settings Optuna tries; 0 turns tuning off."""
    timeout_s: float | None = Field(None, gt=0)
    """Stop starting trials after this many seconds; null: no time limit."""
    pruner: Literal["median", "none"] = "median"
    """Stop a trial early when it is worse than the median trial at the same epoch."""
    seed: int = 0
    """The seed of Optuna's sampler."""
    search_space: SearchSpaceSpec = SearchSpaceSpec()
    """The ranges tried."""


class FairnessLimitSpec(_Strict):
    """A limit on a between-group difference: absolute, and/or relative to the champion.

    ``use`` picks what is held to the limit: the point estimate (``point``, the default) or
    the upper end of its 95% bootstrap interval (``upper_bound``, the cautious choice: the
    gate then fails when the difference could plausibly exceed the limit).
    """

    absolute: float | None = Field(None, ge=0.0)
    """The largest difference between groups allowed; null: no absolute limit."""
    relative: float | None = Field(None, ge=0.0)
    """The most the difference may exceed the deployed model's; null: not compared."""
    use: Literal["point", "upper_bound"] = "point"
    """What is held to the limit: the point estimate, or the upper end of its 95% interval."""


class GateSpec(_Strict):
    """The deploy gate: quality floors, tolerances, fairness limits, lift over baselines."""

    min_metrics: dict[Metric, float] = Field(default_factory=lambda: {"roc_auc": 0.6})
    """Floors: a candidate scoring below one on the test rows is not deployed."""
    max_metrics: dict[Metric, float] = Field(default_factory=dict)
    """Ceilings (for metrics where lower is better): above one, not deployed."""
    tolerances: dict[Metric, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: {"roc_auc": 0.01, "log_loss": 0.02})
    """How much worse than the deployed model a candidate may score and still deploy."""
    fairness: dict[FairnessMetric, FairnessLimitSpec] = Field(default_factory=dict)
    """Limits on differences between groups of each sensitive column."""
    min_lift_over_baseline: dict[Metric, float] = Field(default_factory=dict)
    """The least the candidate must beat the best scikit-learn baseline by (negative allows
    a shortfall); empty: not judged."""
    min_group_size: int = Field(30, ge=1)
    """Groups with fewer test rows are reported but left out of the differences judged."""
    bootstrap: int = Field(200, ge=0)
    """Bootstrap resamples for the 95% intervals of fairness differences; 0: none."""
    seed: int = 0
    """The seed of the bootstrap."""


class ModelCardSpec(_Strict):
    """Text for the model card of every version."""

    intended_use: str = "Not stated in the dataset spec."
    """What the model is for, and what it must not be used for."""
    limitations: str = "Not stated in the dataset spec."
    """What is known to limit the model: the data's age, coverage, small groups."""


class CanarySpec(_Strict):
    """How a new model proves itself on live traffic before it replaces the stable one.

    ``share: 0`` deploys straight to stable. The canary is promoted once it has served
    ``min_requests`` with an error rate and p99 latency within the limits, and aborted as
    soon as its errors alone exceed what ``max_error_rate`` allows over ``min_requests``.
    """

    share: float = Field(0.1, ge=0.0, le=1.0)
    """The share of requests the canary serves; 0 deploys straight to stable."""
    min_requests: int = Field(200, ge=1)
    """Requests the canary must serve before it can be promoted."""
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)
    """The largest share of the canary's requests that may fail."""
    max_p99_latency_ms: float = Field(50.0, gt=0)
    """The canary's largest 99th-percentile latency, in milliseconds."""


class EdgeSpec(_Strict):
    """Edge target: a folder or fsspec URI that gets int8 bundles (model + manifest)."""

    target: str = "${TIDELINE_HOME:-.tideline}/edge"
    """The folder or fsspec URI; `${VAR}` and `${VAR:-default}` are expanded."""
    max_bytes: int = Field(2_000_000, ge=1)
    """The largest bundle allowed, in bytes; a larger one fails the deployment."""


class ServingSpec(_Strict):
    """The inference service's behaviour (read when the service starts)."""

    variants: dict[Literal["high", "normal"], Literal["fp32", "int8", "fp16"]] = Field(
        default_factory=lambda: {"high": "fp32", "normal": "int8"})
    """The model variant that serves each request priority."""
    max_batch: int = Field(64, ge=1)
    """The most records scored together in one micro-batch."""
    max_wait_ms: float = Field(5.0, ge=0.0)
    """How long a record may wait for others to fill a micro-batch, in milliseconds."""
    max_records: int = Field(1000, ge=1)
    """The most records one request may carry."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """The largest request body accepted, in bytes."""
    rate_limit_per_minute: int = Field(6000, ge=1)
    """Requests each API key may make to this model per minute."""
    log_retention_files: int = Field(1000, ge=1)
    """Prediction log files kept; older ones are deleted."""
    log_flush_rows: int = Field(1000, ge=1)
    """Logged predictions buffered before they are written to a file."""
    log_flush_seconds: float = Field(10.0, gt=0)
    """The longest logged predictions stay buffered, in seconds."""


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
    """The table scored: a local CSV/Parquet path or a lakefs:// URI; `${VAR}` and
    `${VAR:-default}` are expanded."""
    id_column: str | None = None
    """A column that identifies rows in the output; null: the row number."""
    schedule: str | None = None
    """When `<model>_batch_job` runs (cron, UTC); null: only on demand."""

    @model_validator(mode="after")
    def _check(self) -> BatchSpec:
        check_cron(self.schedule, "deployment.batch.schedule")
        return self


class DeploymentSpec(_Strict):
    """Where and how a model that passes the gate goes live."""

    canary: CanarySpec = CanarySpec()
    """The canary rollout on the inference service."""
    edge: EdgeSpec = EdgeSpec()
    """Where int8 bundles for devices are published."""
    batch: BatchSpec | None = None
    """Batch scoring of a table with the stable model; null: none."""


DriftMethod = Literal["ks", "wasserstein", "psi", "chisquare", "jensenshannon"]


class DriftTestSpec(_Strict):
    """A drift test pinned with its threshold (never Evidently's size-dependent default).

    ``ks`` and ``chisquare`` report a p-value (drift when it is at or under the
    threshold); ``wasserstein`` (normed by the reference's std), ``psi`` and
    ``jensenshannon`` report a distance (drift when it is at or over the threshold).
    """

    method: DriftMethod
    """The test: `ks` or `chisquare` (p-values), `wasserstein`, `psi` or `jensenshannon`
    (distances)."""
    threshold: float = Field(gt=0)
    """A p-value at or under it, or a distance at or over it, marks the column drifted."""

    @model_validator(mode="after")
    def _check(self) -> DriftTestSpec:
        if self.method in ("ks", "chisquare") and self.threshold > 1:
            raise ValueError(f"threshold: {self.method} reports a p-value, so its threshold "
                             f"must be at most 1 (got {self.threshold:g}); e.g. 0.05")
        return self


class ColumnDriftSpec(_Strict):
    """One column's drift test, when it differs from its type's."""

    method: DriftMethod | None = None
    """The column's drift test; null: monitoring.numeric's or .categorical's."""
    threshold: float | None = Field(None, gt=0)
    """The column's threshold; null: that of its type's test."""
    weight: float = Field(1.0, ge=0)
    """The column's weight in the drifted share compared to drift_threshold; 0 ignores it."""


class MonitoringSpec(_Strict):
    """Drift and production-performance monitoring, and when they trigger retraining."""

    numeric: DriftTestSpec = DriftTestSpec(method="wasserstein", threshold=0.1)
    """The drift test of numeric columns."""
    categorical: DriftTestSpec = DriftTestSpec(method="jensenshannon", threshold=0.1)
    """The drift test of categorical columns."""
    columns: dict[str, ColumnDriftSpec] = Field(default_factory=dict)
    """Per-column tests and weights that replace the type's."""
    drift_threshold: float = Field(0.3, gt=0, le=1)
    """The (weighted) share of drifted columns at or over which a batch counts as drifted."""
    consecutive_batches: int = Field(2, ge=1)
    """Drifted batches in a row that trigger retraining."""
    min_batch_rows: int = Field(200, ge=1)
    """Rows of the newest production files that make up the batch tested for drift."""
    evidently_max_rows: int = Field(100_000, ge=1)
    """Batches with more rows are tested by the fast path (same formulas, no Evidently)."""
    performance_floor: dict[Metric, float] = Field(default_factory=lambda: {"roc_auc": 0.7})
    """Scores on labelled production rows below which the model is retrained."""
    min_labelled_rows: int = Field(100, ge=1)
    """Labelled production rows needed before performance is judged."""
    cooldown_minutes: float = Field(60.0, ge=0)
    """The least time between two automatic retrainings."""
    include_labelled_rows: bool = True
    """Add labelled production rows to the training data of the next run."""
    alert_webhook: str = "${TIDELINE_ALERT_WEBHOOK:-}"
    """A URL that gets a JSON post on each alert; empty: none. `${VAR}` and
    `${VAR:-default}` are expanded."""


class ResourcesSpec(_Strict):
    """What the stages may use of the machine."""

    # Results are the same whatever the budget, so it is in no recipe key.
    memory_budget: ByteSize | None = Field(None, gt=0)
    """Memory the stages may use for data (e.g. `4GB`, `512MiB`); larger tables go in
    batches. null: half of the machine's (or container's) memory."""


class CostSpec(_Strict):
    """Prices of compute, to put a cost on training runs and predictions.

    Unset, the environment's ``TIDELINE_PRICE_CPU_CORE_HOUR`` and ``TIDELINE_PRICE_GPU_HOUR``
    (``name=price,...``) give them; with neither, costs read 0.
    """

    # Prices change no artifact: they are in no recipe key.
    cpu_core_hour: float = Field(0.0, ge=0.0)
    """Price of one CPU core for an hour (CPU seconds used × this ÷ 3600)."""
    gpu_hour: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict)
    """Price of a GPU for an hour, by device name as torch reports it (a listed name that
    appears in the device's name matches, e.g. `H100`)."""
    currency: str = Field("USD", min_length=1, max_length=8)
    """The currency the prices are in (a label only)."""


class DatasetSpec(_Strict):
    """One data set and its model: a YAML file in datasets/."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    """The model's name: lower-case letters, digits and `_`; prefixes its assets and jobs."""
    description: str = ""
    """What the model predicts, in a sentence or two (shown in the UI and model card)."""
    schedule: str | None = "0 2 * * *"
    """The nightly run of this model's chain (cron, UTC); null turns it off."""
    source: SourceSpec
    """The data: where the table is and how to read it."""
    target: TargetSpec
    """The label column and its positive class."""
    columns: dict[str, ColumnSpec]
    """The feature columns by name, with their types and rules; other columns are ignored."""
    sensitive: list[str] = Field(default_factory=list)
    """Feature columns whose groups the model card and fairness limits compare."""
    validation: ValidationSpec = ValidationSpec()
    """How much bad data a run tolerates."""
    split: SplitSpec = SplitSpec()
    """How the rows are split into training, validation and test sets."""
    training: TrainingSpec = TrainingSpec()
    """The network and its training settings."""
    quantization: QuantizationSpec = QuantizationSpec()
    """The int8 and fp16 variants of the model."""
    tuning: TuningSpec = TuningSpec()
    """Hyperparameter search with Optuna (off by default)."""
    gate: GateSpec = GateSpec()
    """The deploy gate a candidate model must pass."""
    model_card: ModelCardSpec = ModelCardSpec()
    """Text for the model card."""
    deployment: DeploymentSpec = DeploymentSpec()
    """Canary rollout, edge bundles and batch scoring."""
    serving: ServingSpec = ServingSpec()
    """The inference service's behaviour."""
    monitoring: MonitoringSpec = MonitoringSpec()
    """Drift and production-performance monitoring, and when they retrain the model."""
    resources: ResourcesSpec = ResourcesSpec()
    """What the stages may use of the machine."""
    cost: CostSpec = CostSpec()
    """Prices of compute, for the cost of training runs and predictions."""

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
            raise ValueError(f"sensitive: {unknown} are not listed in columns (sensitive "
                             "columns are feature columns); list them under columns or remove "
                             "them from sensitive")
        unknown = [c for c in self.monitoring.columns if c not in self.columns]
        if unknown:
            raise ValueError(f"monitoring.columns: {unknown} are not listed in columns; "
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


# The fields whose text `load_spec` expands ``${VAR}`` and ``${VAR:-default}`` in; other
# fields take ``${...}`` literally (a number field refuses it).
ENV_FIELDS = ("source.path", "deployment.edge.target", "deployment.batch.source",
              "monitoring.alert_webhook")


@dataclass(frozen=True)
class SpecField:
    """One key path of a spec, e.g. ``gate.fairness.<metric>.use``.

    Attributes:
        path: The keys from the top; a ``<...>`` part stands for a key the user picks (a
            column's name, a metric, a parameter).
        annotation: The type of the value, ``| None`` included.
        info: The field's pydantic settings (default, bounds, description); None for the
            value of a mapping (``columns.<column>``), described by ``block``.
        block: The model of the value when it is a block of settings, else None.
    """

    path: tuple[str, ...]
    annotation: Any
    info: FieldInfo | None
    block: type[BaseModel] | None

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _strip(annotation: Any) -> Any:
    """``X | None`` as X, ``Annotated[X, ...]`` as X; other types as they are."""
    import types
    import typing

    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return _strip(rest[0])
    return annotation


def _is_block(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def key_placeholder(path: tuple[str, ...]) -> str:
    """The ``<...>`` part standing for a key of the mapping at ``path``."""
    return {"columns": "<column>", "params": "<param>",
            "variants": "<priority>"}.get(path[-1], "<metric>")


def spec_fields() -> list[SpecField]:
    """Every key path of a dataset spec, depth first in the models' field order."""
    import typing

    out: list[SpecField] = []

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            path, kind = (*prefix, name), _strip(info.annotation)
            out.append(SpecField(path, info.annotation, info, kind if _is_block(kind) else None))
            if _is_block(kind):
                walk(kind, path)
            elif typing.get_origin(kind) is dict:
                value = _strip(typing.get_args(kind)[1])
                if _is_block(value):
                    key = (*path, key_placeholder(path))
                    out.append(SpecField(key, value, None, value))
                    walk(value, key)

    walk(DatasetSpec, ())
    return out


def _resolve(loc: tuple[Any, ...]) -> tuple[tuple[str, ...], Any] | None:
    """The key path (``columns.<column>.min``) and type at a pydantic error location.

    None when ``loc`` leads nowhere in the spec's models (a misspelt key, a union member).
    """
    import typing

    kind: Any = DatasetSpec
    pattern: tuple[str, ...] = ()
    for part in loc:
        kind = _strip(kind)
        if _is_block(kind) and str(part) in kind.model_fields:
            kind = kind.model_fields[str(part)].annotation
            pattern = (*pattern, str(part))
        elif typing.get_origin(kind) is dict and isinstance(part, str) and part != "[key]":
            kind = typing.get_args(kind)[1]
            pattern = (*pattern, key_placeholder(pattern))
        elif typing.get_origin(kind) is list and isinstance(part, int):
            kind = typing.get_args(kind)[0]
            pattern = (*pattern, "[]")
        else:
            return None
    return pattern, _strip(kind)


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str] | None:
    """The field names the spec allows at ``loc`` (a pydantic error location).

    None when ``loc`` does not lead to a block of settings.
    """
    resolved = _resolve(loc)
    if resolved is None or not _is_block(resolved[1]):
        return None
    return list(resolved[1].model_fields)


# What each block, mapping and list of the spec looks like (by key path), for a message
# about one given in another shape or left out; tests/unit/test_spec_error_table.py checks
# that every one is here and that each example is a valid setting.
_EXAMPLES = {
    "name": "my_model",
    "source": "{path: data/my_table.csv, format: csv}",
    "source.na_values": '["", NA, "?"]',
    "target": "{column: income, positive: '>50K'}",
    "target.classes": "['<=50K', '>50K']",
    "columns": "{age: {type: numeric, min: 0, max: 120}, sex: {type: categorical}}",
    "columns.<column>": "{type: numeric, min: 0, max: 120}",
    "columns.<column>.categories": "[Female, Male]",
    "sensitive": "[sex, race]",
    "validation": "{max_failed_fraction: 0.05}",
    "split": "{seed: 0, test_fraction: 0.2, validation_fraction: 0.1}",
    "training": "{epochs: 30, learning_rate: 0.001}",
    "training.params": "{frequencies: 48}",
    "training.hidden": "[64, 32]",
    "quantization": "{calibration_rows: 512}",
    "tuning": "{n_trials: 20, timeout_s: 600}",
    "tuning.search_space": "{learning_rate: {low: 0.0001, high: 0.01, log: true}}",
    "tuning.search_space.learning_rate": "{low: 0.0001, high: 0.01, log: true}",
    "tuning.search_space.width": "{low: 16, high: 128, log: true}",
    "tuning.search_space.depth": "{low: 1, high: 3}",
    "tuning.search_space.dropout": "{low: 0.0, high: 0.4}",
    "tuning.search_space.weight_decay": "{low: 0.000001, high: 0.01, log: true}",
    "tuning.search_space.epochs": "{low: 10, high: 40}",
    "tuning.search_space.params": "{frequency_scale: {low: 0.01, high: 1.0, log: true}}",
    "tuning.search_space.params.<param>": "{low: 0.01, high: 1.0, log: true}",
    "gate": "{min_metrics: {roc_auc: 0.7}}",
    "gate.min_metrics": "{roc_auc: 0.7}",
    "gate.max_metrics": "{ece: 0.1}",
    "gate.tolerances": "{roc_auc: 0.01, log_loss: 0.02}",
    "gate.fairness": "{demographic_parity_difference: {absolute: 0.1, use: point}}",
    "gate.fairness.<metric>": "{absolute: 0.1, use: point}",
    "gate.min_lift_over_baseline": "{roc_auc: 0.0}",
    "model_card": "{intended_use: Teaching only., limitations: Small sample.}",
    "deployment": "{edge: {target: edge/}}",
    "deployment.canary": "{share: 0.1, min_requests: 200}",
    "deployment.edge": "{target: edge/}",
    "deployment.batch": "{source: data/to_score.csv, schedule: '0 3 * * *'}",
    "serving": "{max_batch: 64}",
    "serving.variants": "{high: fp32, normal: int8}",
    "monitoring": "{drift_threshold: 0.3}",
    "monitoring.numeric": "{method: ks, threshold: 0.05}",
    "monitoring.categorical": "{method: psi, threshold: 0.2}",
    "monitoring.columns": "{age: {weight: 2.0}}",
    "monitoring.columns.<column>": "{method: ks, threshold: 0.01}",
    "monitoring.performance_floor": "{roc_auc: 0.7}",
    "resources": "{memory_budget: 4GB}",
    "resources.memory_budget": "4GB",
    "cost": "{cpu_core_hour: 0.05, gpu_hour: {H100: 2.5}}",
    "cost.gpu_hour": "{H100: 2.5}",
}
_PLAIN_KEY = re.compile(r"[A-Za-z_][\w\-]*(?: [\w\-]+)*")


def _example(loc: tuple[Any, ...], enclosing: bool = True) -> str | None:
    """An example, in YAML flow style from the top, of the setting at ``loc``.

    With ``enclosing``, the nearest enclosing block's when ``loc`` has none of its own
    (``source.path``: the ``source`` example). None when there is none.
    """
    resolved = _resolve(loc)
    if resolved is None:
        return None
    pattern = resolved[0]
    for end in range(len(pattern), 0 if enclosing else len(pattern) - 1, -1):
        text = _EXAMPLES.get(".".join(pattern[:end]))
        if text is None:
            continue
        keys = [k if _PLAIN_KEY.fullmatch(k) else json.dumps(k) for k in map(str, loc[:end])]
        for key in reversed(keys[1:]):
            text = f"{{{key}: {text}}}"
        return f"{keys[0]}: {text}"
    return None


def _given(value: Any) -> str:
    """What a spec gave, as a message shows it: ``str 'data.csv'``, ``null``."""
    return "null" if value is None else f"{type(value).__name__} {short_repr(value)}"


def _wrong_shape(loc: tuple[Any, ...], value: Any, shape: str) -> str:
    """``must be <shape>, not <what was given>; write it as e.g. `<example>```."""
    example = _example(loc)
    return (f"must be {shape}, not {_given(value)}"
            + (f"; write it as e.g. `{example}`" if example else ""))


def _not_a_field(loc: tuple[Any, ...]) -> str:
    """Why the key at ``loc`` is refused, the fields allowed there and where it may belong."""
    import difflib

    name, where = str(loc[-1]), loc[:-1]
    allowed = _fields_at(where)
    if allowed is None:
        return "is not a field of the spec; check its spelling and where it is nested"
    msg = f"is not a field there; the fields of {_field(where) or 'a spec'} are: " + ", ".join(
        allowed)
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.75)
    if close:
        return f"{msg}; did you mean {close[0]}?"
    here = (_resolve(where) or ((), None))[0]
    fields = [f for f in spec_fields() if f.info is not None and f.path[:-1] != here]
    homes = [".".join(f.path[:-1]) or "the top level" for f in fields if f.path[-1] == name]
    if homes:
        return f"{msg}; {name} is a field of {', '.join(homes[:3])}: move it there"
    near = difflib.get_close_matches(name, sorted({f.path[-1] for f in fields}), n=1,
                                     cutoff=0.8)
    if near:
        spots = [f.dotted for f in fields if f.path[-1] == near[0]]
        return f"{msg}; did you mean {' or '.join(spots[:3])}?"
    return msg


_SUBFIELD = re.compile(r"^([A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*): (.*)$", re.S)
_TOP_FIELDS = {"name", "description", "source", "target", "columns", "sensitive", "validation",
               "split", "training", "quantization", "tuning", "gate", "model_card",
               "deployment", "serving", "monitoring", "resources", "cost"}


def _rephrase(error: dict[str, Any]) -> str:
    """One pydantic error as ``field: rule (got value)``, in the spec's own words."""
    kind, msg = error["type"], error["msg"]
    loc = tuple(error["loc"])
    key = loc[-1:] == ("[key]",)
    field = _field(loc[:-2] if key else loc)
    got = error.get("input")
    if kind == "union_mismatch":
        return f"{field}: {msg}"
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
        example = _example(loc)
        msg = "is required; add it" + (f", e.g. `{example}`" if example else "")
    elif kind == "extra_forbidden":
        msg = _not_a_field(loc)
    elif kind in ("model_type", "model_attributes_type"):
        msg = _wrong_shape(loc, got, "a mapping of settings")
    elif kind == "dict_type":
        msg = _wrong_shape(loc, got, "a mapping")
    elif kind == "list_type":
        msg = _wrong_shape(loc, got, "a list")
    else:
        for start in ("Input should", "String should", "List should", "Dictionary should"):
            msg = msg.replace(start, "must" if not key else "each key must")
        if isinstance(got, (str, int, float, bool)) or got is None:
            msg += f" (got {short_repr(got)})"
        example = _example(loc, enclosing=False) if not key else None
        if example:
            msg += f"; write it as e.g. `{example}`"
        if isinstance(got, str) and _ENV.search(got):
            msg += (f"; ${{VAR}} is expanded only in {', '.join(ENV_FIELDS[:-1])} and "
                    f"{ENV_FIELDS[-1]}: write the value itself here")
    return f"{field}: {msg}" if field else msg


def _merge_unions(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per value that matches no member of a union, listing the shapes it may take.

    For a value such as ``target.positive: [1]`` pydantic reports one error per member,
    each under a location ending in the member's name (``target.positive.str``, ...).
    """
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for error in errors:
        loc = tuple(error["loc"])
        at = next((n for n in range(len(loc), -1, -1) if _resolve(loc[:n]) is not None), 0)
        if (error["type"] == "extra_forbidden" or at == len(loc) or not isinstance(loc[at], str)
                or loc[at] == "[key]"):
            out.append(error)
            continue
        shape = error["msg"].removeprefix("Input should be ").split(",")[0]
        if loc[:at] not in merged:
            merged[loc[:at]] = {"type": "union_mismatch", "loc": loc[:at], "shapes": [],
                                "input": error.get("input")}
            out.append(merged[loc[:at]])
        entry = merged[loc[:at]]
        if shape not in entry["shapes"]:
            entry["shapes"].append(shape)
    for entry in merged.values():
        shapes = entry.pop("shapes")
        listed = ", ".join(shapes[:-1]) + (" or " if len(shapes) > 1 else "") + shapes[-1]
        entry["msg"] = f"must be {listed}, not {_given(entry['input'])}"
    return out


def _block(raw: dict[str, Any], loc: tuple[str, ...]) -> dict[str, Any]:
    """The block at ``loc`` (inside ``raw``, its parent) as a dict; empty when absent.

    Raises:
        SpecError: the block is given as something other than a mapping (``source:
            data.csv``), naming the field, what was given and the shape wanted
            (`load_spec` adds the file).
    """
    value = raw.get(loc[-1])
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{_field(loc)}: {_wrong_shape(loc, value, 'a mapping of settings')}")
    return dict(value)


def _top_key_above(text: str, line: int) -> str | None:
    """The top-level key whose block holds line ``line`` (0-based) of a YAML text."""
    for row in reversed(text.splitlines()[:line + 1]):
        match = re.match(r"([^\s#'\"][^:#]*):(\s|$)", row)
        if match:
            return match.group(1).strip()
    return None


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
    text = ""
    try:
        text = path.read_text()
        # The C loader when PyYAML has it: parsing is most of the cost of loading many specs.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        block = _top_key_above(text, mark.line) if mark else None
        where += f" (below top-level key {block})" if block else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"dataset spec {path} is not valid YAML{where}: {problem}; fix the "
                        "indentation or quoting there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"dataset spec {path} cannot be read ({exc}); check its permissions "
                        "and that it is UTF-8 text") from None
    if raw is None:
        raise SpecError(f"dataset spec {path} is empty (no fields); write a mapping of fields "
                        "(name, source, target, columns, ...), e.g. starting from a copy of "
                        "datasets/adult.yaml")
    if not isinstance(raw, dict):
        raise SpecError(f"dataset spec {path} must be a mapping of fields (name, source, "
                        f"target, columns, ...), not {_given(raw)}; see datasets/adult.yaml "
                        "for the layout")
    try:
        source = _block(raw, ("source",))
        if "path" in source:
            source["path"] = expand_env(str(source["path"]))
        raw["source"] = source
        deployment = _block(raw, ("deployment",))
        edge = _block(deployment, ("deployment", "edge"))
        edge["target"] = expand_env(str(edge.get("target", EdgeSpec().target)))
        raw["deployment"] = deployment | {"edge": edge}
        if isinstance(deployment.get("batch"), dict) and "source" in deployment["batch"]:
            batch = dict(deployment["batch"])
            batch["source"] = expand_env(str(batch["source"]))
            raw["deployment"]["batch"] = batch
        monitoring = _block(raw, ("monitoring",))
        monitoring["alert_webhook"] = expand_env(
            str(monitoring.get("alert_webhook", MonitoringSpec().alert_webhook)))
        raw["monitoring"] = monitoring
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_rephrase(e) for e in _merge_unions(exc.errors())))
        raise SpecError(f"dataset spec {path}: {'; '.join(problems)}; fix "
                        f"{'this field' if len(problems) == 1 else 'these fields'} in "
                        f"{path.name}") from None
    except SpecError as exc:
        raise SpecError(f"dataset spec {path}: {exc}") from None


def resolve_spec_path(name_or_path: str, datasets_dir: Path) -> Path:
    """A spec given by name (``adult``) resolves to ``datasets/adult.yaml``."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return datasets_dir / f"{name_or_path}.yaml"
