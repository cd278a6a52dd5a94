"""validated_features: parse, validate against the spec, quarantine, split, fit preprocessing.

The source is read, validated and written out in batches whose size comes from the
memory budget (`pipelines.resources`): the kept rows and the quarantined rows go to
Parquet batch by batch, the column-level rules are judged on the table's totals
(`pipelines.validation.combine`), then a second pass over the kept rows adds labels and
the split. Every output is the same whatever the batch size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any

from pipelines.artifacts import (
    FrameWriter,
    StageFailure,
    StageResult,
    open_object,
    read_file,
    read_frame,
)
from pipelines.features import (
    LABEL_COLUMN,
    MIN_SPLIT_ROWS,
    ROW_COLUMN,
    SPLIT_COLUMN,
    SPLIT_NAMES,
    preprocessing_params,
    rows_needed,
    split_codes,
)
from pipelines.hashing import canonical_json
from pipelines.ingest import InputError, read_raw_batches
from pipelines.progress import RowProgress
from pipelines.resources import batch_rows, memory_budget
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore, Manifest
from pipelines.validation import ValidationResult, combine, validate

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# What one source row costs in memory while its batch is parsed, typed and validated
# (text cells as Python strings, their typed copies, masks), measured on Adult-like rows.
RAW_ROW_BYTES = 2_500


def build_features(spec: DatasetSpec, store: ArtifactStore, raw: Manifest,
                   on_progress: Callable[[str], None] | None = None) -> StageResult:
    """Validated, typed rows with labels and split; quarantined rows with reasons.

    Args:
        spec: The dataset spec.
        store: The artifact store (the raw snapshot is read from it).
        raw: The raw_data manifest.
        on_progress: Called with a progress line every few seconds (`RowProgress`).
    """
    file = spec.source.path
    rows_per_batch = batch_rows(memory_budget(spec), RAW_ROW_BYTES)
    progress = RowProgress(on_progress, "validated")
    with open_object(store, raw.files["source"]) as source:
        try:
            schema, batches = read_raw_batches(
                source, fmt=raw.info["format"], file=file, batch_rows=rows_per_batch,
                encoding=spec.source.encoding, na_values=spec.source.na_values,
                delimiter=spec.source.delimiter, expected_columns=len(spec.columns) + 1,
                duplicate_columns=spec.source.duplicate_columns,
                read_columns={spec.target.column, *spec.columns})
            labelled = None
            if "labelled" in raw.files:
                labelled = _as_source(read_frame(store, raw, "labelled"), raw.info["format"])
                batches = _with_labelled_rows(batches, labelled, schema)
            # closing(): a batch reader stopped early lets go of the source before it shuts.
            with closing(batches), FrameWriter(store, _clean_schema(spec)) as clean_out, \
                    FrameWriter(store, _quarantine_schema(schema, labelled)) as quarantine_out:
                result, kept_targets = _validate_batches(spec, batches, clean_out,
                                                         quarantine_out, progress)
                clean, quarantine = clean_out.close(), quarantine_out.close()
        except InputError as exc:
            raise StageFailure(str(exc)) from None
    try:
        return _features(spec, store, result, kept_targets, clean.path, quarantine,
                         rows_per_batch, progress)
    except BaseException:
        quarantine.path.unlink(missing_ok=True)
        raise
    finally:
        clean.path.unlink(missing_ok=True)


def _validate_batches(spec: DatasetSpec, batches: Iterator[pd.DataFrame], clean_out: FrameWriter,
                      quarantine_out: FrameWriter, progress: RowProgress
                      ) -> tuple[ValidationResult, dict[str, int]]:
    """Validate batch by batch, writing kept and quarantined rows.

    Returns the combined result and the kept rows per target value.
    """
    file = spec.source.path
    parts: list[ValidationResult] = []
    kept_targets: dict[str, int] = {}
    rows = 0
    missing = False
    for batch in batches:
        part = validate(batch, spec, first_row=rows)
        # A column missing from the header is missing from every batch: nothing is
        # written, but every batch is still counted, so the report covers the table.
        missing = missing or any(not c.passed and c.name.endswith("__exists")
                                 for c in part.checks)
        if not missing:
            clean_out.write(part.clean)
            quarantine_out.write(part.quarantine)
            for value, count in part.clean[spec.target.column].value_counts().items():
                kept_targets[str(value)] = kept_targets.get(str(value), 0) + int(count)
        part.clean = part.quarantine = None
        parts.append(part)
        rows += len(batch)
        progress.add(len(batch))
    result = combine(parts, spec)
    if result.failed:
        raise StageFailure(result.report(file), result.check_dicts())
    return result, kept_targets


def _features(spec: DatasetSpec, store: ArtifactStore, result: ValidationResult,
              kept_targets: dict[str, int], clean_path: Any, quarantine: Any,
              rows_per_batch: int, progress: RowProgress) -> StageResult:
    """Label and split the kept rows (a second pass over them) and fit preprocessing."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    file, target = spec.source.path, spec.target.column
    checks = result.check_dicts()
    kept = result.kept
    _check_enough_rows(spec, kept, result.quarantined, checks)
    positive = str(spec.target.positive)
    positives = kept_targets.get(positive, 0)
    if positives in (0, kept):
        found = ", ".join(f"{v!r} ({n} rows)" for v, n in sorted(
            kept_targets.items(), key=lambda item: (-item[1], item[0])))
        raise StageFailure(
            f"{file}, column {target!r}: rule 'both classes present' failed: "
            f"every kept row has the same label (values: {found}; target.positive is "
            f"{positive!r}); check target.positive against the values in "
            "the data, or add rows of the other class", checks)
    codes = split_codes(kept, spec.split.seed, spec.split.test_fraction,
                        spec.split.validation_fraction)
    train = codes == 0
    names = pa.array(SPLIT_NAMES, pa.string())
    distinct: dict[str, set[str]] = {col: set() for col in spec.categorical_columns}
    schema = _clean_schema(spec).append(pa.field(LABEL_COLUMN, pa.float32())).append(
        pa.field(SPLIT_COLUMN, pa.string()))
    progress = RowProgress(progress.say, "labelled and split", kept)
    with FrameWriter(store, schema) as out, pq.ParquetFile(clean_path) as clean_file:
        start = 0
        for batch in clean_file.iter_batches(batch_size=rows_per_batch):
            table = pa.Table.from_batches([batch])
            n = table.num_rows
            table = table.append_column(LABEL_COLUMN, pc.cast(
                pc.equal(table[target], positive), pa.float32()))
            table = table.append_column(SPLIT_COLUMN, pc.take(names, codes[start:start + n]))
            in_train = pa.array(train[start:start + n])
            for col in distinct:
                values = pc.unique(pc.drop_null(table[col].filter(in_train)))
                distinct[col].update(values.to_pylist())
            out.write(table)
            start += n
            progress.add(n)
        features = out.close()

    def numeric(col: str) -> np.ndarray:
        with pq.ParquetFile(clean_path) as clean_file:
            values = clean_file.read(columns=[col]).column(0).to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype="float64")[train]

    try:
        params = preprocessing_params(spec, numeric, lambda col: distinct[col])
    except InputError as exc:
        features.path.unlink(missing_ok=True)
        raise StageFailure(str(exc), checks) from None
    counts = np.bincount(codes, minlength=3)
    rows = {"train": int(counts[0]), "val": int(counts[1]), "test": int(counts[2]),
            "quarantined": result.quarantined}
    return StageResult(
        kind="validated_features",
        frames={"features": features, "quarantine": quarantine},
        files={"preprocess.json": canonical_json(params),
               "validation.json": canonical_json(checks)},
        info={"rows": rows, "target": target, "positive": positive},
        metadata={"rows": kept, "quarantined_rows": result.quarantined,
                  "failed_fraction": round(result.failed_fraction, 6),
                  "splits": rows, "columns": len(spec.columns),
                  "positive_rate": round(positives / kept, 4)},
        checks=checks,
    )


def _clean_schema(spec: DatasetSpec) -> pa.Schema:
    """The kept rows' columns: row number, target (text), features typed by the spec."""
    import pyarrow as pa

    return pa.schema([(ROW_COLUMN, pa.int64()), (spec.target.column, pa.string())] + [
        (col, pa.float64() if cs.type == "numeric" else pa.string())
        for col, cs in spec.columns.items()])


def _quarantine_schema(source: pa.Schema, labelled: pd.DataFrame | None) -> pa.Schema:
    """The quarantined rows' columns: row number, the source's columns, the reasons.

    Dictionary-encoded source columns are stored as their values (one type for every
    batch); a column whose labelled production values the source's type cannot hold
    (a fraction in an integer column) is stored as text.
    """
    import pyarrow as pa

    fields = []
    for f in source:
        typ = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        if labelled is not None and f.name in labelled.columns:
            try:
                pa.array(labelled[f.name], type=typ, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                typ = pa.string()
        fields.append(pa.field(f.name, typ))
    return pa.schema([pa.field(ROW_COLUMN, pa.int64()), *fields,
                      pa.field("__reasons", pa.string())])


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


def _as_source(labelled: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """Labelled production rows in the source's representation (text for CSV)."""
    if fmt == "csv":
        labelled = labelled.astype(object).where(labelled.notna(), None)
        labelled = labelled.map(lambda v: v if v is None else (
            str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)))
    return labelled


def _with_labelled_rows(batches: Iterator[pd.DataFrame], labelled: pd.DataFrame,
                        schema: pa.Schema) -> Generator[pd.DataFrame]:
    """The source's batches, then the labelled production rows.

    The labelled rows take the source's columns, missing ones empty.
    """
    import pandas as pd

    yield from batches
    yield pd.DataFrame({name: labelled[name] if name in labelled.columns else None
                        for name in schema.names}, index=pd.RangeIndex(len(labelled)))


def load_params(store: ArtifactStore, features: Manifest) -> dict:
    return json.loads(read_file(store, features, "preprocess.json"))
