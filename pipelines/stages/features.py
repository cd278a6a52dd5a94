"""validated_features: parse, validate against the spec, quarantine, split, fit preprocessing."""

from __future__ import annotations

import json

from pipelines.artifacts import StageFailure, StageResult, read_file, read_frame
from pipelines.features import (
    LABEL_COLUMN,
    MIN_SPLIT_ROWS,
    SPLIT_COLUMN,
    assign_split,
    fit_preprocessing,
    rows_needed,
)
from pipelines.hashing import canonical_json
from pipelines.ingest import InputError, parse_raw
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore, Manifest
from pipelines.validation import validate


def build_features(spec: DatasetSpec, store: ArtifactStore, raw: Manifest) -> StageResult:
    """Validated, typed rows with labels and split; quarantined rows with reasons."""
    file = spec.source.path
    try:
        frame = parse_raw(read_file(store, raw, "source"), fmt=raw.info["format"], file=file,
                          encoding=spec.source.encoding, na_values=spec.source.na_values,
                          delimiter=spec.source.delimiter,
                          expected_columns=len(spec.columns) + 1)
    except InputError as exc:
        raise StageFailure(str(exc)) from None
    if "labelled" in raw.files:
        frame = _with_labelled_rows(frame, read_frame(store, raw, "labelled"),
                                    raw.info["format"])
    result = validate(frame, spec)
    checks = result.check_dicts()
    if result.failed:
        raise StageFailure(result.report(file), checks)
    clean = result.clean
    _check_enough_rows(spec, len(clean), len(result.quarantine), checks)
    target = clean[spec.target.column].astype(str)
    clean[LABEL_COLUMN] = (target == str(spec.target.positive)).astype("float32")
    if clean[LABEL_COLUMN].nunique() < 2:
        found = ", ".join(f"{v!r} ({n} rows)" for v, n in target.value_counts().items())
        raise StageFailure(
            f"{file}, column {spec.target.column!r}: rule 'both classes present' failed: "
            f"every kept row has the same label (values: {found}; target.positive is "
            f"{str(spec.target.positive)!r}); check target.positive against the values in "
            "the data, or add rows of the other class", checks)
    clean[SPLIT_COLUMN] = assign_split(len(clean), spec.split.seed, spec.split.test_fraction,
                                       spec.split.validation_fraction)
    try:
        params = fit_preprocessing(clean[clean[SPLIT_COLUMN] == "train"], spec)
    except InputError as exc:
        raise StageFailure(str(exc), checks) from None
    counts = clean[SPLIT_COLUMN].value_counts().to_dict()
    rows = {"train": int(counts.get("train", 0)), "val": int(counts.get("val", 0)),
            "test": int(counts.get("test", 0)), "quarantined": len(result.quarantine)}
    return StageResult(
        kind="validated_features",
        frames={"features": clean, "quarantine": result.quarantine},
        files={"preprocess.json": canonical_json(params),
               "validation.json": canonical_json(checks)},
        info={"rows": rows, "target": spec.target.column, "positive": str(spec.target.positive)},
        metadata={"rows": len(clean), "quarantined_rows": len(result.quarantine),
                  "failed_fraction": round(result.failed_fraction, 6),
                  "splits": rows, "columns": len(spec.columns),
                  "positive_rate": round(float(clean[LABEL_COLUMN].mean()), 4)},
        checks=checks,
    )


def _check_enough_rows(spec: DatasetSpec, kept: int, quarantined: int, checks: list) -> None:
    """Enough kept rows to give train, validation and test their minimum each."""
    split = spec.split
    needed = rows_needed(split.test_fraction, split.validation_fraction)
    if kept >= needed:
        return
    dropped = f" ({quarantined} more quarantined)" if quarantined else ""
    raise StageFailure(
        f"{spec.source.path}: rule 'enough rows to split' failed: {kept} row"
        f"{'' if kept == 1 else 's'} of data{dropped}, but splitting into train, validation "
        f"and test (split.test_fraction {split.test_fraction:g}, split.validation_fraction "
        f"{split.validation_fraction:g}) needs at least {needed} rows, {MIN_SPLIT_ROWS} per "
        "split; add rows to the source", checks)


def _with_labelled_rows(frame, labelled, fmt: str):
    """Append labelled production rows in the source's representation (text for CSV)."""
    import pandas as pd

    if fmt == "csv":
        labelled = labelled.astype(object).where(labelled.notna(), None)
        labelled = labelled.map(lambda v: v if v is None else (
            str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)))
    return pd.concat([frame, labelled[[c for c in labelled.columns if c in frame.columns]]],
                     ignore_index=True)


def load_params(store: ArtifactStore, features: Manifest) -> dict:
    return json.loads(read_file(store, features, "preprocess.json"))
