"""Each stage's key takes the settings that shape its output, and only those.

Every setting of the spec is changed once (the table must cover them all: a new setting
without a row fails), and the stages whose configuration, and so recipe key, changes are
exactly the ones listed.
"""

import copy
import types
import typing

import pytest
import yaml
from pydantic import BaseModel

from pipelines.spec import DatasetSpec
from tests.conftest import REPO

STAGES = ("raw_data", "validated_features", "trained_weights", "quantized_weights",
          "model_card", "drift_report", "production_performance", "batch_predictions")
RAW, FEAT, TRAIN, QUANT, CARD, DRIFT, PERF, BATCH = STAGES


def _set(path: str, value):
    def mutate(raw: dict) -> None:
        node = raw
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return mutate


def _rename_column(raw: dict) -> None:
    raw["columns"] = {("years" if k == "age" else k): v for k, v in raw["columns"].items()}


def _retarget(raw: dict) -> None:
    raw["target"]["column"] = "income"


# setting -> (change, the stages that re-key)
TABLE = {
    "name": (_set("name", "adult2"), {CARD}),
    "description": (_set("description", "another text"), {CARD}),
    # When the nightly run happens: never part of a key.
    "schedule": (_set("schedule", "30 4 * * 1"), set()),
    "source.path": (_set("source.path", "/elsewhere/adult.csv"), set()),
    "source.format": (_set("source.format", "parquet"), {RAW, FEAT}),
    "source.encoding": (_set("source.encoding", "latin-1"), {FEAT, BATCH}),
    "source.delimiter": (_set("source.delimiter", ";"), {FEAT, BATCH}),
    "source.na_values": (_set("source.na_values", ["", "?", "n/a"]), {FEAT, BATCH}),
    # Which copy of a repeated column is read shapes the validated rows; batch scoring
    # refuses repeated names whatever the policy (pipelines/batch.py), so it keeps its key.
    "source.duplicate_columns": (_set("source.duplicate_columns", "keep_first"), {FEAT}),
    "target.column": (_retarget, {RAW, FEAT, CARD}),
    "target.positive": (_set("target.positive", "<=50K"), {FEAT, CARD, PERF, BATCH}),
    "target.classes": (_set("target.classes", ["<=50K", ">50K", "unknown"]), {FEAT, BATCH}),
    "columns": (_rename_column, {RAW, FEAT, TRAIN, CARD, DRIFT}),
    "columns.*.type": (lambda r: r["columns"]["occupation"].update(type="numeric"),
                       {FEAT, DRIFT}),
    "columns.*.min": (_set("columns.age.min", 17), {FEAT}),
    "columns.*.max": (_set("columns.age.max", 99), {FEAT}),
    "columns.*.categories": (lambda r: r["columns"]["sex"].update(
        categories=["Female", "Male", "Other"]), {FEAT}),
    "columns.*.max_null_fraction": (_set("columns.age.max_null_fraction", 0.1), {FEAT}),
    "columns.*.max_length": (_set("columns.occupation.max_length", 50), {FEAT}),
    "columns.*.max_categories": (_set("columns.occupation.max_categories", 20), {FEAT}),
    "sensitive": (_set("sensitive", ["sex"]), {CARD}),
    "validation.max_failed_fraction": (_set("validation.max_failed_fraction", 0.1), {FEAT, BATCH}),
    "validation.max_category_length": (_set("validation.max_category_length", 100), {FEAT}),
    "validation.max_categories": (_set("validation.max_categories", 500), {FEAT}),
    "split.seed": (_set("split.seed", 12), {FEAT}),
    "split.test_fraction": (_set("split.test_fraction", 0.25), {FEAT}),
    "split.validation_fraction": (_set("split.validation_fraction", 0.15), {FEAT}),
    **{f"training.{k}": (_set(f"training.{k}", v), {TRAIN}) for k, v in {
        "hidden": [32], "dropout": 0.2, "learning_rate": 0.01, "weight_decay": 0.01,
        "epochs": 5, "batch_size": 128, "patience": 2, "seed": 3, "reference_rows": 500,
        "model": "mlp", "params": {"frequencies": 8},
    }.items()},
    **{f"quantization.{k}": (_set(f"quantization.{k}", v), {QUANT}) for k, v in {
        "calibration_rows": 100, "int8_tolerance": 0.1, "fp16_tolerance": 0.02}.items()},
    **{f"tuning.{k}": (_set(f"tuning.{k}", v), {TRAIN}) for k, v in {
        "n_trials": 4, "timeout_s": 60, "pruner": "none", "seed": 5}.items()},
    **{f"tuning.search_space.{k}": (_set(f"tuning.search_space.{k}", v), {TRAIN})
       for k, v in {"learning_rate": {"low": 0.001, "high": 0.1, "log": True},
                    "width": {"low": 8, "high": 64, "log": True},
                    "depth": {"low": 1, "high": 4}, "dropout": {"low": 0.0, "high": 0.3},
                    "weight_decay": {"low": 1e-5, "high": 1e-3, "log": True},
                    "epochs": {"low": 5, "high": 20},
                    "params": {"frequency_scale": {"low": 0.01, "high": 1.0, "log": True}},
                    }.items()},
    **{f"gate.{k}": (_set(f"gate.{k}", v), {CARD}) for k, v in {
        "min_metrics": {"roc_auc": 0.7}, "max_metrics": {"ece": 0.2},
        "tolerances": {"roc_auc": 0.05},
        "fairness": {"demographic_parity_difference": {"absolute": 0.3}},
        "min_group_size": 50, "bootstrap": 100, "seed": 4,
        "min_lift_over_baseline": {"roc_auc": 0.0}}.items()},
    "model_card.intended_use": (_set("model_card.intended_use", "teaching"), {CARD}),
    "model_card.limitations": (_set("model_card.limitations", "small"), {CARD}),
    # Deployment and serving steer where and how models are served: no stage re-keys.
    **{f"deployment.canary.{k}": (_set(f"deployment.canary.{k}", v), set()) for k, v in {
        "share": 0.5, "min_requests": 10, "max_error_rate": 0.1,
        "max_p99_latency_ms": 100.0}.items()},
    "deployment.edge.target": (_set("deployment.edge.target", "/mnt/devices"), set()),
    "deployment.edge.max_bytes": (_set("deployment.edge.max_bytes", 5000), set()),
    # Batch scoring keys on the table's content and its reader, not its path or schedule
    # (tests/unit/test_batch.py); the base below has a batch section.
    "deployment.batch.source": (_set("deployment.batch.source", "/elsewhere/batch.csv"),
                                set()),
    "deployment.batch.id_column": (_set("deployment.batch.id_column", "row_id"), {BATCH}),
    "deployment.batch.schedule": (_set("deployment.batch.schedule", "0 5 * * *"), set()),
    **{f"serving.{k}": (_set(f"serving.{k}", v), set()) for k, v in {
        "variants": {"high": "fp32", "normal": "fp32"}, "max_batch": 8, "max_wait_ms": 1.0,
        "max_records": 10, "max_body_bytes": 4096, "rate_limit_per_minute": 60,
        "log_retention_files": 5, "log_flush_rows": 10, "log_flush_seconds": 1.0}.items()},
    "monitoring.numeric": (_set("monitoring.numeric", {"method": "ks", "threshold": 0.05}),
                           {DRIFT}),
    "monitoring.categorical": (_set("monitoring.categorical",
                                    {"method": "psi", "threshold": 0.2}), {DRIFT}),
    "monitoring.columns": (_set("monitoring.columns", {"age": {"weight": 2.0}}), {DRIFT}),
    "monitoring.drift_threshold": (_set("monitoring.drift_threshold", 0.5), {DRIFT}),
    "monitoring.evidently_max_rows": (_set("monitoring.evidently_max_rows", 1000), {DRIFT}),
    # How much memory the stages may use: batches change, results do not.
    "resources.memory_budget": (_set("resources.memory_budget", "64MB"), set()),
    # Prices put a cost on runs and predictions; they change no artifact.
    "cost.cpu_core_hour": (_set("cost.cpu_core_hour", 0.05), set()),
    "cost.gpu_hour": (_set("cost.gpu_hour", {"H100": 2.5}), set()),
    "cost.currency": (_set("cost.currency", "EUR"), set()),
    "monitoring.performance_floor": (_set("monitoring.performance_floor", {"roc_auc": 0.8}),
                                     {PERF}),
    "monitoring.min_labelled_rows": (_set("monitoring.min_labelled_rows", 50), {PERF}),
    "monitoring.include_labelled_rows": (_set("monitoring.include_labelled_rows", False),
                                         {RAW}),
    # When and where the loop acts: never part of a key.
    "monitoring.consecutive_batches": (_set("monitoring.consecutive_batches", 5), set()),
    "monitoring.min_batch_rows": (_set("monitoring.min_batch_rows", 1000), set()),
    "monitoring.cooldown_minutes": (_set("monitoring.cooldown_minutes", 5), set()),
    "monitoring.alert_webhook": (_set("monitoring.alert_webhook", "http://alerts.example/x"),
                                 set()),
}


def _base() -> dict:
    raw = yaml.safe_load((REPO / "datasets" / "adult.yaml").read_text())
    raw["source"]["path"] = "/data/adult.csv"
    raw.setdefault("deployment", {})["batch"] = {"source": "/data/batch.csv"}
    return raw


def _configs(raw: dict) -> dict:
    spec = DatasetSpec.model_validate(raw)
    return {stage: spec.stage_config(stage) for stage in STAGES}


def _whole():
    from pipelines.spec import DriftTestSpec, RangeSpec

    return (DriftTestSpec, RangeSpec)  # settings changed as one value (method + threshold)


WHOLE = _whole()


def _settings(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = field.annotation
        # An optional section (``deployment.batch``) is covered field by field.
        optional = [a for a in typing.get_args(annotation) if a is not type(None)]
        if isinstance(annotation, types.UnionType) and len(optional) == 1:
            annotation = optional[0]
        if (isinstance(annotation, type) and issubclass(annotation, BaseModel)
                and annotation not in WHOLE):
            out |= _settings(annotation, f"{path}.")
        else:
            out.add(path)
    return out


def test_the_table_covers_every_setting():
    from pipelines.spec import ColumnSpec

    every = _settings(DatasetSpec) | {f"columns.*.{f}" for f in ColumnSpec.model_fields}
    assert not every - set(TABLE), f"add a row for: {sorted(every - set(TABLE))}"
    assert not set(TABLE) - every, f"rows for settings that are gone: {set(TABLE) - every}"


@pytest.mark.parametrize("setting", sorted(TABLE))
def test_a_setting_rekeys_exactly_the_stages_it_shapes(setting):
    change, expected = TABLE[setting]
    base = _base()
    before = _configs(base)
    changed = copy.deepcopy(base)
    change(changed)
    after = _configs(changed)
    rekeyed = {stage for stage in STAGES if after[stage] != before[stage]}
    assert rekeyed == expected, f"{setting}: re-keys {sorted(rekeyed)}"
