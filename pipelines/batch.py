"""Batch scoring: read a table in bounded chunks as training reads its source, type its features.

The table is read with the spec's ``source`` settings (encoding, delimiter, ``na_values``) and
the same parsing rules as ``pipelines.ingest`` (text columns for CSV, typed columns for
Parquet, names stripped, duplicate names refused), and its features are typed as
``pipelines.validation`` types them: numbers through ``to_numeric`` (a written-out NaN is
missing), categories as stripped strings. A value the model cannot take (a word where a
number belongs, an infinite number) leaves its row unscored rather than guessed.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.ingest import _MAGIC, InputError, _check_delimiter, _check_header
from pipelines.spec import SourceSpec, short_repr

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from pipelines.deploy import DeployedModel

# Rows read, typed and scored at a time: memory stays bounded whatever the table's size.
CHUNK_ROWS = 65_536
# The spec field that names the table, for messages.
FIELD = "deployment.batch.source"
_HEAD_BYTES = 64 * 1024
# Problems kept as examples for the stage's metadata.
EXAMPLES = 5


def table_format(source: str) -> str:
    """``parquet`` for a ``.parquet``/``.pq`` name, else ``csv`` (as ``source.format`` does)."""
    return SourceSpec.model_construct(path=source).resolved_format


@dataclass(frozen=True)
class ScoringModel:
    """The deployed model a table is scored with (from a deployment-history entry)."""

    version: int | None
    quantized_weights: str
    fp32_sha256: str | None = None

    @classmethod
    def from_deployed(cls, model: DeployedModel) -> ScoringModel:
        """From the deployment history's stable model."""
        fp32 = model.variants.get("fp32")
        return cls(version=model.version, quantized_weights=model.quantized_weights,
                   fp32_sha256=fp32.sha256 if fp32 is not None else None)

    @property
    def label(self) -> str:
        return "unversioned" if self.version is None else f"version {self.version}"


@dataclass(frozen=True)
class TableSource:
    """A local table file and how to read it.

    ``file`` is the name messages use (the spec's path or ``lakefs://`` URI), which may
    differ from ``path`` (a lakeFS object is read from a local copy).
    """

    path: Path
    file: str
    fmt: str
    encoding: str = "utf-8"
    delimiter: str = ","
    na_values: tuple[str, ...] = ("",)


@dataclass
class Chunk:
    """Up to `CHUNK_ROWS` rows: the model's input columns, and the ids when a column names them.

    ``ids`` is an Arrow array (a Parquet id column keeps its type; a CSV one is text);
    ``None`` when rows are identified by their position.
    """

    frame: pd.DataFrame
    ids: pa.Array | None


@dataclass
class Unusable:
    """Rows whose values the model cannot take, with a few examples for people."""

    rows: int = 0
    by_column: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def check_file(path: Path, file: str) -> Path:
    """The table's path, checked to be a readable file.

    Raises:
        InputError: missing, a directory or unreadable, naming ``deployment.batch.source``.
    """
    if not path.exists():
        raise InputError(f"no such file; check {FIELD} in the dataset spec", file=file,
                         rule="table exists")
    if path.is_dir():
        raise InputError(f"the path is a directory, not a file; point {FIELD} at the table "
                         "file itself", file=file, rule="table is a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"the file cannot be opened for reading ({exc.strerror or exc}); give "
                         "the user that runs Tideline read permission", file=file,
                         rule="table readable") from None
    return path


def _check_head(source: TableSource) -> None:
    with open(source.path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    if not head.strip():
        raise InputError(f"the file is empty ({source.path.stat().st_size} bytes); expected a "
                         f"header line and rows: re-export the table or fix {FIELD}",
                         file=source.file, rule="not empty")
    for magic, what, command in _MAGIC:
        if head.startswith(magic):
            raise InputError(f"the file holds {what} bytes; unpack it (e.g. `{command}`) and "
                             f"point {FIELD} at the plain file", file=source.file,
                             rule="uncompressed file")
    if source.fmt == "csv" and head.startswith(b"PAR1"):
        raise InputError("the file holds Parquet bytes, not CSV text; give it a .parquet "
                         f"name and point {FIELD} at it", file=source.file, rule="csv format")


def _csv_header(source: TableSource, expected_columns: int) -> list[str]:
    try:
        with open(source.path, encoding=source.encoding, newline="") as f:
            first = f.readline()
            f.seek(0)
            header = next(csv.reader(f, delimiter=source.delimiter), [])
    except UnicodeDecodeError as exc:
        raise InputError(f"the header is not valid {source.encoding} (byte {exc.start}); "
                         "re-save the file in that encoding or set source.encoding in the spec",
                         file=source.file, rule="encoding") from None
    header_line = first.lstrip("\ufeff").rstrip("\r\n")
    header = [h.lstrip("\ufeff").strip() if i == 0 else h.strip() for i, h in enumerate(header)]
    _check_delimiter(header, header_line, source.delimiter, expected_columns, source.file)
    _check_header(header, source.file, policy_applies=False)
    return header


def _parquet_file(source: TableSource) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable Parquet file (truncated or corrupt?): {exc}; "
                         "re-export it", file=source.file, rule="parquet format") from None
    _check_header(parquet.schema_arrow.names, source.file, policy_applies=False)
    return parquet


def _check_columns(header: list[str], needed: list[str], source: TableSource,
                   who: str) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise InputError(
            f"the table has no column {missing[0]!r}"
            + (f" (nor {missing[1:]})" if len(missing) > 1 else "")
            + f", which {who} needs; the file has: {header[:20]}; add the column or point "
            f"{FIELD} at a table with the model's features", file=source.file,
            column=missing[0], rule="column exists")


def read_chunks(source: TableSource, columns: list[str], id_column: str | None,
                chunk_rows: int = CHUNK_ROWS, who: str = "the model") -> Iterator[Chunk]:
    """The table's rows, ``chunk_rows`` at a time (the header is checked before any row).

    Args:
        source: The table and its reader settings.
        columns: The feature columns the model takes (each must be present).
        id_column: The column identifying rows, or None (rows are then numbered).
        chunk_rows: Rows per chunk.
        who: Who needs the columns, for the message naming a missing one.

    Raises:
        InputError: one line naming the file (and column), the rule and what to do.
    """
    _check_head(source)
    needed = [*columns, *([id_column] if id_column and id_column not in columns else [])]
    if source.fmt == "parquet":
        parquet = _parquet_file(source)
        _check_columns(parquet.schema_arrow.names, columns, source, who)
        if id_column:
            _check_columns(parquet.schema_arrow.names, [id_column], source,
                           f"deployment.batch.id_column {id_column!r}")
        yield from _parquet_chunks(parquet, source, columns, id_column, needed, chunk_rows)
        return
    header = _csv_header(source, len(needed))
    _check_columns(header, columns, source, who)
    if id_column:
        _check_columns(header, [id_column], source,
                       f"deployment.batch.id_column {id_column!r}")
    yield from _csv_chunks(source, columns, id_column, needed, chunk_rows)


def _parquet_chunks(parquet: Any, source: TableSource, columns: list[str],
                    id_column: str | None, needed: list[str],
                    chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow as pa

    try:
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=needed):
            table = pa.Table.from_batches([batch])
            ids = table.column(id_column).combine_chunks() if id_column else None
            yield Chunk(table.select(columns).to_pandas(), ids)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable Parquet file (truncated or corrupt?): {exc}; "
                         "re-export it", file=source.file, rule="parquet format") from None


def _csv_chunks(source: TableSource, columns: list[str], id_column: str | None,
                needed: list[str], chunk_rows: int) -> Iterator[Chunk]:
    import pandas as pd
    import pyarrow as pa

    wanted = set(needed)
    rows = 0
    try:
        with pd.read_csv(
                source.path, sep=source.delimiter, dtype=str, keep_default_na=False,
                na_values=list(source.na_values), encoding=source.encoding,
                usecols=lambda c: str(c).lstrip("\ufeff").strip() in wanted,
                chunksize=chunk_rows) as reader:
            for frame in reader:
                frame.columns = [str(c).lstrip("\ufeff").strip() for c in frame.columns]
                ids = None
                if id_column:
                    values = frame[id_column]
                    ids = pa.array(values.astype(object).where(values.notna(), None),
                                   type=pa.string())
                rows += len(frame)
                yield Chunk(frame[columns], ids)
    except UnicodeDecodeError as exc:
        raise InputError(f"byte {exc.start} of a block after row {rows} is not valid "
                         f"{source.encoding}; re-save the file as {source.encoding} or set "
                         "source.encoding in the spec", file=source.file,
                         rule="encoding") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"not a readable CSV file after row {rows} ({exc}); check the quoting "
                         f"of fields that contain {source.delimiter!r} or line breaks",
                         file=source.file, rule="csv format") from None


def typed_features(frame: pd.DataFrame, numeric: list[str], categorical: list[str],
                   first_row: int, unusable: Unusable) -> tuple[pd.DataFrame, np.ndarray]:
    """The features typed as training types them, and which rows can be scored.

    Numbers that are not numbers, or infinite, make their row unusable (counted in
    ``unusable``, with examples numbered from ``first_row``); missing values are fine:
    the model imputes them as in training.
    """
    import numpy as np
    import pandas as pd

    n = len(frame)
    bad = np.zeros(n, dtype=bool)
    typed = pd.DataFrame(index=frame.index)
    for col in numeric:
        raw = frame[col]
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        nan_text = np.zeros(n, dtype=bool)
        if not pd.api.types.is_numeric_dtype(raw):
            nan_text = raw.astype("string").str.strip().str.lower().isin(
                ["nan", "+nan", "-nan"]).fillna(False).to_numpy(dtype=bool)
        not_number = (raw.notna() & values.isna()).to_numpy(dtype=bool) & ~nan_text
        inf = np.isinf(values.to_numpy())
        for mask, rule in ((not_number, "is not a number"), (inf, "is infinite")):
            idx = np.flatnonzero(mask)
            if not len(idx):
                continue
            unusable.by_column[col] = unusable.by_column.get(col, 0) + len(idx)
            for i in idx[:max(0, EXAMPLES - len(unusable.examples))]:
                unusable.examples.append(
                    f"row {first_row + int(i)}, column {col!r}: "
                    f"{short_repr(raw.iloc[int(i)])} {rule}")
        bad |= not_number | inf
        typed[col] = values.where(~inf, np.nan)
    for col in categorical:
        raw = frame[col]
        typed[col] = raw.astype("string").str.strip().astype(object).where(raw.notna(), None)
    unusable.rows += int(bad.sum())
    return typed, ~bad


def file_state(path: Path) -> tuple[int, int, int]:
    """(size, mtime, inode): what tells that a file changed while it was read."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


@dataclass
class BatchInputs:
    """What one scoring of the batch table needs: the stable model and the table's version.

    Found without reading the table (a local file's hash is stat-cached; a ``lakefs://``
    object's version is read from lakeFS metadata), so an unchanged night is a cache hit.
    """

    model: ScoringModel
    source: str
    fmt: str
    source_hash: str
    path: Path | None = None
    lakefs: tuple[Any, Any] | None = None  # (client, SourceVersion) of a lakefs:// table

    @classmethod
    def find(cls, spec: Any, store: Any, stat_cache: Any,
             lakefs_client: Any = None) -> BatchInputs:
        """The stable model and the table's version.

        Args:
            spec: The model's dataset spec (its ``deployment.batch``).
            store: The artifact store holding the deployment history.
            stat_cache: The file-stat cache of content hashes.
            lakefs_client: Called for a ``lakefs://`` table; returns the SDK client.

        Raises:
            ValueError: no ``deployment.batch`` or no stable model; InputError (a
                ValueError): an unusable table. One line naming the model or file.
        """
        from pipelines import deploy
        from pipelines.ingest import table_version
        from pipelines.lakefs import LakeFSError

        batch = spec.deployment.batch
        if batch is None:
            raise ValueError(f"model {spec.name}: deployment.batch is not set in its spec; "
                             "add deployment.batch.source (a CSV or Parquet table, or a "
                             "lakefs:// URI) to score a table")
        stable = deploy.current(store, spec.name).stable
        if stable is None:
            raise ValueError(f"model {spec.name}: no stable model to score {batch.source} "
                             f"with; run {spec.name}_training_job until a model passes the "
                             "gate and is deployed")
        model, fmt = ScoringModel.from_deployed(stable), table_format(batch.source)
        try:
            version = table_version(batch.source, stat_cache, lakefs_client,
                                    local_path=lambda uri: check_file(Path(uri), uri))
        except LakeFSError as exc:
            raise InputError(str(exc), file=batch.source, rule="table exists") from None
        return cls(model, batch.source, fmt, version.content_hash, path=version.path,
                   lakefs=version.lakefs)

    def score(self, spec: Any, store: Any) -> Any:
        """Score the table (a local copy first for a ``lakefs://`` table)."""
        import tempfile

        from pipelines.artifacts import StageFailure
        from pipelines.lakefs import LakeFSError, copy_source
        from pipelines.stages.batch import score_table, table_source

        id_column = spec.deployment.batch.id_column
        if self.lakefs is None:
            return score_table(spec, store, self.model,
                               table_source(spec, self.path, self.source, self.fmt), id_column)
        client, version = self.lakefs
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / f"table.{self.fmt}"
            try:
                with open(local, "wb") as out:
                    copy_source(client, version, out)
            except LakeFSError as exc:
                raise StageFailure(f"{self.source}: {exc}") from None
            return score_table(spec, store, self.model,
                               table_source(spec, local, version.pinned_uri, self.fmt),
                               id_column)
