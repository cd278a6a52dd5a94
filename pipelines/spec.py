"""Dataset specs: one YAML file describes a user's data set; no code change needed.

A spec names the source, the target and its positive class, the column types, optional
sensitive columns, validation rules, the split seed and training settings. Columns the
spec does not list are ignored, so a change to them stops at the validation stage.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SpecError(ValueError):
    """A dataset spec that cannot be used, with the file and the field at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    path: str
    format: Literal["csv", "parquet"] | None = None
    encoding: str = "utf-8"
    na_values: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "null", "None"])

    @property
    def resolved_format(self) -> str:
        if self.format:
            return self.format
        suffix = Path(self.path.split("?")[0]).suffix.lower()
        return "parquet" if suffix in (".parquet", ".pq") else "csv"


class TargetSpec(_Strict):
    column: str
    positive: str | int | float
    classes: list[str | int | float] | None = None


class ColumnSpec(_Strict):
    type: Literal["numeric", "categorical"]
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    max_null_fraction: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> ColumnSpec:
        if self.type == "categorical" and (self.min is not None or self.max is not None):
            raise ValueError("min/max apply to numeric columns only")
        if self.type == "numeric" and self.categories is not None:
            raise ValueError("categories apply to categorical columns only")
        return self


class ValidationSpec(_Strict):
    max_failed_fraction: float = Field(0.05, ge=0.0, le=1.0)


class SplitSpec(_Strict):
    seed: int = 0
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)


class TrainingSpec(_Strict):
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    patience: int = Field(5, ge=1)
    seed: int = 0
    reference_rows: int = Field(2000, ge=1)


class QuantizationSpec(_Strict):
    calibration_rows: int = Field(512, ge=1)
    int8_tolerance: float = 0.05
    fp16_tolerance: float = 0.01


class RangeSpec(_Strict):
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> RangeSpec:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class SearchSpaceSpec(_Strict):
    """Ranges searched by Optuna; each layer is half the width of the one before."""

    learning_rate: RangeSpec = RangeSpec(low=1e-4, high=1e-2, log=True)
    width: RangeSpec = RangeSpec(low=16, high=128, log=True)
    depth: RangeSpec = RangeSpec(low=1, high=3)
    dropout: RangeSpec = RangeSpec(low=0.0, high=0.4)
    weight_decay: RangeSpec = RangeSpec(low=1e-6, high=1e-2, log=True)
    epochs: RangeSpec = RangeSpec(low=10, high=40)


class TuningSpec(_Strict):
    """Hyperparameter search; ``n_trials: 0`` trains once with the ``training`` settings."""

    n_trials: int = Field(0, ge=0)
    timeout_s: float | None = Field(None, gt=0)
    pruner: Literal["median", "none"] = "median"
    seed: int = 0
    search_space: SearchSpaceSpec = SearchSpaceSpec()


class FairnessLimitSpec(_Strict):
    """A limit on a between-group difference: absolute, and/or relative to the champion."""

    absolute: float | None = None
    relative: float | None = None


class GateSpec(_Strict):
    """The deploy gate: quality floors, tolerances against the champion, fairness limits."""

    min_metrics: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.6})
    max_metrics: dict[str, float] = Field(default_factory=dict)
    tolerances: dict[str, float] = Field(
        default_factory=lambda: {"roc_auc": 0.01, "log_loss": 0.02})
    fairness: dict[str, FairnessLimitSpec] = Field(default_factory=dict)
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


class DeploymentSpec(_Strict):
    canary: CanarySpec = CanarySpec()
    edge: EdgeSpec = EdgeSpec()


DriftMethod = Literal["ks", "wasserstein", "psi", "chisquare", "jensenshannon"]


class DriftTestSpec(_Strict):
    """A drift test pinned with its threshold (never Evidently's size-dependent default).

    ``ks`` and ``chisquare`` report a p-value (drift when it is at or under the
    threshold); ``wasserstein`` (normed by the reference's std), ``psi`` and
    ``jensenshannon`` report a distance (drift when it is at or over the threshold).
    """

    method: DriftMethod
    threshold: float = Field(gt=0)


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
    performance_floor: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.7})
    min_labelled_rows: int = Field(100, ge=1)
    cooldown_minutes: float = Field(60.0, ge=0)
    include_labelled_rows: bool = True
    alert_webhook: str = "${TIDELINE_ALERT_WEBHOOK:-}"


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
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

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        if not self.columns:
            raise ValueError("columns: list at least one feature column")
        if self.target.column in self.columns:
            raise ValueError(f"target column {self.target.column!r} must not be in columns")
        unknown = [c for c in self.sensitive if c not in self.columns]
        if unknown:
            raise ValueError(f"sensitive columns {unknown} are not listed in columns")
        unknown = [c for c in self.monitoring.columns if c not in self.columns]
        if unknown:
            raise ValueError(f"monitoring.columns {unknown} are not listed in columns")
        return self

    @property
    def numeric_columns(self) -> list[str]:
        return [c for c, s in self.columns.items() if s.type == "numeric"]

    @property
    def categorical_columns(self) -> list[str]:
        return [c for c, s in self.columns.items() if s.type == "categorical"]

    def stage_config(self, stage: str) -> dict[str, Any]:
        """The part of the spec that shapes one stage's output (it enters the recipe key)."""
        dump = self.model_dump(mode="json")
        if stage == "validated_features":
            source = {k: v for k, v in dump["source"].items() if k != "path"}
            source["format"] = self.source.resolved_format
            return {k: dump[k] for k in ("target", "columns", "validation", "split")} | {
                "source": source
            }
        if stage == "trained_weights":
            return {k: dump[k] for k in ("training", "target", "tuning")}
        if stage == "quantized_weights":
            return {"quantization": dump["quantization"]}
        if stage == "model_card":
            return {k: dump[k] for k in ("name", "description", "model_card", "sensitive",
                                         "gate")}
        raise KeyError(stage)


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset variable without default fails."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is None:
                raise SpecError(f"environment variable {name} is not set (used in the spec)")
            return default
        return value

    return _ENV.sub(sub, text)


def load_spec(path: str | Path) -> DatasetSpec:
    """Load and validate a dataset spec.

    Raises:
        SpecError: naming the file and each field that is wrong.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"dataset spec {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"dataset spec {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"dataset spec {path} must be a mapping")
    try:
        source = dict(raw.get("source") or {})
        if "path" in source:
            source["path"] = expand_env(str(source["path"]))
        raw["source"] = source
        deployment = dict(raw.get("deployment") or {})
        edge = dict(deployment.get("edge") or {})
        edge["target"] = expand_env(str(edge.get("target", EdgeSpec().target)))
        raw["deployment"] = deployment | {"edge": edge}
        monitoring = dict(raw.get("monitoring") or {})
        monitoring["alert_webhook"] = expand_env(
            str(monitoring.get("alert_webhook", MonitoringSpec().alert_webhook)))
        raw["monitoring"] = monitoring
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise SpecError(f"dataset spec {path}: {problems}") from exc
    except SpecError as exc:
        raise SpecError(f"dataset spec {path}: {exc}") from exc


def resolve_spec_path(name_or_path: str, datasets_dir: Path) -> Path:
    """A spec given by name (``adult``) resolves to ``datasets/adult.yaml``."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return datasets_dir / f"{name_or_path}.yaml"
