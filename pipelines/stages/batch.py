"""batch_predictions: a table scored with the stable model's fp32 ONNX file, kept as Parquet.

The output has one row per input row, in order: ``row_id`` (the ``id_column``'s value, else
the row's position from 0), ``probability`` of the positive class, ``label`` (the positive
class at 0.5 and above, as the service answers) and ``model_version``. A row whose values
the model cannot take gets no probability or label; more of them than
``validation.max_failed_fraction`` fails the stage. The Parquet file is written chunk by
chunk to a temporary file and streamed into the store, so memory stays bounded.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.artifacts import Markdown, StageFailure, StageResult, read_file
from pipelines.batch import (
    CHUNK_ROWS,
    ScoringModel,
    TableSource,
    Unusable,
    file_state,
    read_chunks,
    typed_features,
)
from pipelines.features import onnx_feeds
from pipelines.ingest import InputError
from pipelines.quantize import predict, session
from pipelines.recipe import thread_count
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore

if TYPE_CHECKING:
    import pyarrow as pa

OUTPUT = "predictions.parquet"
PREVIEW_ROWS = 10
THRESHOLD = 0.5


def table_source(spec: DatasetSpec, path: Path, file: str, fmt: str) -> TableSource:
    """How to read the table: the spec's ``source`` settings, as for training."""
    src = spec.source
    return TableSource(path=path, file=file, fmt=fmt, encoding=src.encoding,
                       delimiter=src.delimiter, na_values=tuple(src.na_values))


def _model_files(store: ArtifactStore, model: ScoringModel) -> tuple[bytes, dict[str, Any]]:
    manifest = store.get_manifest(model.quantized_weights)
    fp32 = read_file(store, manifest, "model_fp32.onnx")
    if model.fp32_sha256 and hashlib.sha256(fp32).hexdigest() != model.fp32_sha256:
        raise StageFailure(f"{model.label}: model_fp32.onnx in the store does not match the "
                           "sha256 of its deployment record (corrupted or replaced file); run "
                           "`make verify` and redeploy the model")
    return fp32, json.loads(read_file(store, manifest, "preprocess.json"))


def _output_table(ids: pa.Array, probability: Any, ok: Any, labels: tuple[str, str],
                  version: int | None) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    n = len(ids)
    label = np.where(probability >= THRESHOLD, labels[0], labels[1]).astype(object)
    return pa.table({
        "row_id": ids,
        "probability": pa.array(probability, type=pa.float64(), mask=~ok),
        "label": pa.array(label, type=pa.string(), mask=~ok),
        "model_version": pa.array([version] * n, type=pa.int64()),
    })


def score_table(spec: DatasetSpec, store: ArtifactStore, model: ScoringModel,
                source: TableSource, id_column: str | None,
                chunk_rows: int = CHUNK_ROWS) -> StageResult:
    """Score every row of the table with the model's fp32 ONNX file.

    Raises:
        StageFailure: the table cannot be read (one line naming the file and column), it
            changed while it was read, or too many rows hold values the model cannot take.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    fp32, params = _model_files(store, model)
    numeric, categorical = list(params["numeric"]), list(params["categorical"])
    sess = session(fp32, threads=thread_count())
    labels = spec.target.label_names()
    before = file_state(source.path)
    rows = scored = positives = chunks = 0
    unusable = Unusable()
    preview: pa.Table | None = None
    with tempfile.TemporaryFile() as spool:
        writer = None
        try:
            for chunk in read_chunks(source, [*numeric, *categorical], id_column, chunk_rows,
                                     who=f"model {spec.name} {model.label}"):
                n = len(chunk.frame)
                typed, ok = typed_features(chunk.frame, numeric, categorical, rows, unusable)
                probability = np.full(n, np.nan)
                if ok.any():
                    probability[ok] = predict(sess, onnx_feeds(typed[ok], params))
                ids = chunk.ids if chunk.ids is not None else pa.array(
                    np.arange(rows, rows + n, dtype="int64"))
                table = _output_table(ids, probability, ok, labels, model.version)
                if writer is None:
                    writer = pq.ParquetWriter(spool, table.schema)
                writer.write_table(table)
                if preview is None or len(preview) < PREVIEW_ROWS:
                    part = table.slice(0, PREVIEW_ROWS)
                    preview = part if preview is None else pa.concat_tables(
                        [preview, part]).slice(0, PREVIEW_ROWS)
                rows += n
                scored += int(ok.sum())
                positives += int((probability[ok] >= THRESHOLD).sum())
                chunks += 1
        except InputError as exc:
            raise StageFailure(str(exc)) from None
        finally:
            if writer is not None:
                writer.close()
        if rows == 0:
            raise StageFailure(f"{source.file}: rule 'not empty' failed: the table has a header "
                               "but no data rows; re-export it with its rows")
        if file_state(source.path) != before:
            raise StageFailure(f"{source.file}: rule 'unchanged while scored' failed: the file "
                               "changed while it was read; run again once it is written "
                               "completely")
        _check_unusable(spec, source.file, rows, unusable)
        spool.seek(0)
        content_hash = store.put_stream(spool)
    share = positives / scored if scored else 0.0
    seconds = time.perf_counter() - start
    return StageResult(
        kind="batch_predictions",
        stored={OUTPUT: content_hash},
        info={"rows": rows, "scored_rows": scored, "model_version": model.version,
              "quantized_weights": model.quantized_weights, "id_column": id_column,
              "labels": list(labels), "threshold": THRESHOLD},
        metadata={"rows": rows, "scored_rows": scored, "unscored_rows": unusable.rows,
                  "unscored_by_column": unusable.by_column,
                  "unscored_examples": unusable.examples,
                  "model_version": model.label if model.version is None else model.version,
                  "positive_share": round(share, 6),
                  "positive_label": labels[0], "source": source.file,
                  "id_column": id_column or "(row number)", "chunks": chunks,
                  "scoring_seconds": round(seconds, 4),
                  "preview": Markdown(_markdown(preview))},
    )


def _check_unusable(spec: DatasetSpec, file: str, rows: int, unusable: Unusable) -> None:
    limit = spec.validation.max_failed_fraction
    if not unusable.rows or unusable.rows / rows <= limit:
        return
    columns = ", ".join(f"{c!r} ({n})" for c, n in unusable.by_column.items())
    raise StageFailure(
        f"{file}: rule 'values the model can take' failed: {unusable.rows} of {rows} rows "
        f"({unusable.rows / rows:.1%}) hold values that are not finite numbers in {columns}, "
        f"over validation.max_failed_fraction {limit:g} (e.g. {unusable.examples[0]}); fix "
        "those values in the table")


def _markdown(table: pa.Table | None) -> str:
    if table is None:
        return ""
    lines = ["| row_id | probability | label | model_version |", "|---|---|---|---|"]
    for r in table.to_pylist():
        p = "" if r["probability"] is None else f"{r['probability']:.4f}"
        lines.append(f"| {r['row_id']} | {p} | {r['label'] or ''} | {r['model_version']} |")
    return "\n".join(lines)
