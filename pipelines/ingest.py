"""Raw data: observe the source cheaply, snapshot it, and parse it with clear errors."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import Counter
from collections.abc import Callable, Collection, Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from pipelines.hashing import hash_file
from pipelines.spec import one_line, short_repr

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# Leading bytes of compressed or binary files that sometimes sit under a .csv name:
# (magic, what it is, the command that unpacks it to stdout).
_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed", "gunzip -c"),
    (b"PK\x03\x04", "zip-compressed", "unzip -p"),
    (b"PK\x05\x06", "zip-compressed", "unzip -p"),
    (b"BZh", "bzip2-compressed", "bunzip2 -c"),
    (b"\xfd7zXZ\x00", "xz-compressed", "xz -dc"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "zstd -dc"),
)
# Delimiters guessed from a header line that parsed to one column.
_DELIMITERS = (";", "\t", "|", ",", ":")
# What to do with a header that names a column more than once (``source.duplicate_columns``).
DuplicatePolicy = Literal["error", "keep_first", "keep_identical"]


class InputError(ValueError):
    """Bad input: one line naming the file (and column), the rule at fault and what to do."""

    def __init__(self, message: str, *, file: str, column: str | None = None, rule: str):
        message = one_line(message)
        self.file, self.column, self.rule, self.detail = file, column, rule, message
        where = f"{file}" + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: rule '{rule}' failed: {message}")


class StatCache:
    """File hash cache keyed by (path, size, mtime, inode), as DVC's state database.

    An unchanged file is never re-read: its hash comes from this table.
    """

    def __init__(self, db_path: str | Path):
        self.db_path = Path(db_path)

    def _connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=30)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS state (path TEXT PRIMARY KEY, size INTEGER,"
            " mtime_ns INTEGER, inode INTEGER, hash TEXT)"
        )
        return conn

    def file_hash(self, path: str | Path) -> tuple[str, bool]:
        """The content hash of a local file and whether it came from the cache."""
        path = Path(path).resolve()
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        with closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT size, mtime_ns, inode, hash FROM state WHERE path = ?", (str(path),)
            ).fetchone()
            if row and tuple(row[:3]) == key:
                return row[3], True
            digest = hash_file(path)
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?)",
                    (str(path), *key, digest),
                )
            return digest, False


@dataclass(frozen=True)
class TableVersion:
    """A table's version, known before any of it is read.

    A local file's content hash (stat-cached), or a ``lakefs://`` object's commit and
    checksum.
    """

    content_hash: str
    path: Path | None = None  # a local file
    lakefs: tuple[Any, Any] | None = None  # (client, lakefs SourceVersion) of a lakefs:// URI


def table_version(uri: str, stat_cache: StatCache, lakefs_client: Callable[[], Any],
                  local_path: Callable[[str], Path] | None = None) -> TableVersion:
    """Resolve a table URI to its version.

    Args:
        uri: A local path (or ``file://``) or a ``lakefs://`` URI.
        stat_cache: The file-stat cache of content hashes.
        lakefs_client: Called for a ``lakefs://`` URI; returns the SDK client.
        local_path: Checks a local URI and returns its path (default
            :func:`local_source_path`, whose messages name ``source.path``).

    Raises:
        InputError: a local file that is missing or unusable; LakeFSError: a ``lakefs://``
            URI that does not resolve.
    """
    from pipelines.lakefs import is_lakefs, source_version

    if is_lakefs(uri):
        client = lakefs_client()
        version = source_version(client, uri)
        return TableVersion(version.content_key, lakefs=(client, version))
    path = (local_path or local_source_path)(uri)
    return TableVersion(stat_cache.file_hash(path)[0], path=path)


def local_source_path(uri: str) -> Path:
    """The local path of a source URI (plain path or ``file://``), checked to be readable.

    Raises:
        InputError: the path is missing, a directory, or cannot be opened for reading.
    """
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if not path.exists():
        raise InputError(
            "no such file; check source.path in the dataset spec"
            " (for the demo data run `make demo`)",
            file=str(path),
            rule="source exists",
        )
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (
            ".csv", ".parquet", ".pq", ".tsv", ".txt"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise InputError(
            f"the path is a directory{hint}, not a file; point source.path in the dataset "
            "spec at the data file itself",
            file=str(path),
            rule="source is a file",
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(
            f"the file cannot be opened for reading ({exc.strerror or exc}); give the user "
            "that runs Tideline read permission (e.g. chmod a+r) or copy the file elsewhere",
            file=str(path),
            rule="source readable",
        ) from None
    return path


def _check_header(names: list[str], file: str, *, policy_applies: bool = True) -> None:
    """Refuse a header that names a column more than once (``duplicate_columns: error``).

    Args:
        names: The header's column names.
        file: The file, for the message.
        policy_applies: Whether ``source.duplicate_columns`` can accept the file (the
            training source); batch-scoring tables have no such setting.
    """
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        remedy = (" in the header, or set source.duplicate_columns in the dataset spec to "
                  "keep_first (use the first of each) or keep_identical (keep one when the "
                  "repeats hold the same values)") if policy_applies else " in the header"
        raise InputError(
            f"duplicate column names {dupes}; every column must be named once: rename the "
            f"repeats{remedy}",
            file=file,
            column=dupes[0],
            rule="unique header",
        )


@dataclass(frozen=True)
class Repeats:
    """How a header that repeats names is read.

    ``keep`` holds the positions of the columns read (the first of each name, in header
    order); ``compare`` maps a name to the positions of its copies (first one first) whose
    values must match in every batch.
    """

    keep: list[int]
    compare: dict[str, list[int]]


def repeated_columns(names: list[str], file: str, policy: DuplicatePolicy = "error",
                     read: Collection[str] | None = None) -> Repeats | None:
    """The plan for a header's repeated names; None when every name is used once.

    Args:
        names: The header's column names, in order.
        file: The name used in error messages.
        policy: ``error`` refuses the header, ``keep_first`` reads the first copy of each
            name, ``keep_identical`` reads the first copy and checks the others match it.
        read: The columns the spec reads; only their copies are compared, the copies of
            other columns are dropped unread (None: compare every repeated name).

    Raises:
        InputError: a repeated name under ``error``.
    """
    if len(set(names)) == len(names):
        return None
    if policy == "error":
        _check_header(names, file)
    first: dict[str, int] = {}
    copies: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        first.setdefault(name, i)
        copies.setdefault(name, []).append(i)
    compare = {}
    if policy == "keep_identical":
        compare = {name: at for name, at in copies.items()
                   if len(at) > 1 and (read is None or name in read)}
    return Repeats(keep=sorted(first.values()), compare=compare)


def _check_identical(column: Callable[[int], pd.Series], repeats: Repeats, first_row: int,
                     file: str) -> None:
    """Fail at the first row where a copy of a repeated column differs from the first copy.

    Two missing values are the same; ``column`` gives a batch's column at a header position
    and ``first_row`` is the batch's first row in the file.
    """
    import numpy as np

    for name, at in repeats.compare.items():
        first = column(at[0])
        for pos in at[1:]:
            other = column(pos)
            missing, other_missing = first.isna().to_numpy(), other.isna().to_numpy()
            equal = (first.astype(object) == other.astype(object)).to_numpy(dtype=bool)
            differ = np.flatnonzero(~((equal & ~missing & ~other_missing)
                                      | (missing & other_missing)))
            if len(differ):
                r = int(differ[0])
                # Python values for the message (numpy scalars print their type).
                shown = [None if m else v.item() if hasattr(v, "item") else v for m, v in (
                    (missing[r], first.iloc[r]), (other_missing[r], other.iloc[r]))]
                raise InputError(
                    f"the header names {name!r} {len(at)} times (columns "
                    f"{', '.join(str(p + 1) for p in at)}) and source.duplicate_columns is "
                    f"keep_identical, but column {pos + 1} differs from column {at[0] + 1} at "
                    f"row {first_row + r} ({short_repr(shown[1])} against "
                    f"{short_repr(shown[0])}); set source.duplicate_columns: keep_first to "
                    "use the first copy, or rename the header of the copy that differs",
                    file=file, column=name, rule="repeated columns identical")


def _check_not_compressed(data: bytes, fmt: str, file: str) -> None:
    name = Path(file).name or file
    suffix = Path(file).suffix or f".{fmt}"
    for magic, what, command in _MAGIC:
        if data.startswith(magic):
            raise InputError(
                f"the file holds {what} bytes under a {suffix} name; unpack it (e.g. "
                f"`{command} {name} > plain{suffix}`) and point source.path at the plain file",
                file=file, rule="uncompressed file")
    if fmt == "csv" and data.startswith(b"PAR1"):
        raise InputError("the file holds Parquet bytes, not CSV text; set source.format: "
                         "parquet in the dataset spec", file=file, rule="csv format")


def _check_delimiter(header: list[str], header_line: str, delimiter: str,
                     expected_columns: int | None, file: str) -> None:
    """Refuse a header that splits into one column where the spec expects more.

    The message names the delimiter the header line seems to use instead.
    """
    if len(header) != 1 or not expected_columns or expected_columns < 2:
        return
    counts = {d: header_line.count(d) for d in _DELIMITERS if d != delimiter}
    guess = max(counts, key=lambda d: counts[d])
    if counts[guess]:
        message = (f"one column where the spec expects {expected_columns}: is the delimiter "
                   f"{guess!r}? Set source.delimiter: {guess!r} in the dataset spec, or "
                   f"re-save the file with {delimiter!r} between fields")
    else:
        message = (f"one column ({header[0][:40]!r}) where the spec expects "
                   f"{expected_columns}, and the header line has no usual delimiter; check "
                   "that the file is a CSV file whose first line names the columns")
    raise InputError(message, file=file, rule="csv delimiter")


HEADER_PREFIX_BYTES = 1 << 20
_DECODE_CHUNK = 16 << 20
# Rows per batch that make a whole file one batch.
_WHOLE_FILE = 1 << 40


def parse_raw(data: bytes, *, fmt: str, file: str, encoding: str = "utf-8",
              na_values: list[str] | None = None, delimiter: str = ",",
              expected_columns: int | None = None, duplicate_columns: DuplicatePolicy = "error",
              read_columns: Collection[str] | None = None) -> pd.DataFrame:
    """Parse raw bytes into a frame, failing with a clear one-line `InputError`.

    `read_raw_batches` over the bytes in one batch: the same checks, errors and types.

    Args:
        data: The raw file bytes.
        fmt: ``"csv"`` or ``"parquet"``.
        file: The name used in error messages (the user's source path).
        encoding: Text encoding for CSV.
        na_values: Strings read as missing in CSV.
        delimiter: The CSV field separator.
        expected_columns: How many columns the spec reads (features and target); a CSV
            header that splits into one column then fails naming the likely delimiter.
        duplicate_columns: What a header that names a column twice does (`repeated_columns`).
        read_columns: The columns the spec reads (`repeated_columns`).
    """
    import pandas as pd

    _, batches = read_raw_batches(
        io.BytesIO(data), fmt=fmt, file=file, batch_rows=_WHOLE_FILE, encoding=encoding,
        na_values=na_values, delimiter=delimiter, expected_columns=expected_columns,
        duplicate_columns=duplicate_columns, read_columns=read_columns)
    with closing(batches):
        frames = list(batches)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _check_stream_encoding(stream: BinaryIO, encoding: str, file: str) -> None:
    """Fail naming the first byte of ``stream`` that is not valid ``encoding``.

    One pass in chunks: memory stays at a chunk whatever the file's size.
    """
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    read = lines = 0
    while True:
        chunk = stream.read(_DECODE_CHUNK)
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            offset = read - pending + exc.start
            line = lines + chunk[: max(offset - read, 0)].count(b"\n") + 1
            raise InputError(
                f"byte {offset} (line {line}) is not valid {encoding}; re-save the file as"
                f" {encoding} or set source.encoding in the spec",
                file=file, rule="encoding") from None
        if not chunk:
            return
        read += len(chunk)
        lines += chunk.count(b"\n")


def read_raw_batches(stream: BinaryIO, *, fmt: str, file: str, batch_rows: int,
                     encoding: str = "utf-8", na_values: list[str] | None = None,
                     delimiter: str = ",", expected_columns: int | None = None,
                     duplicate_columns: DuplicatePolicy = "error",
                     read_columns: Collection[str] | None = None
                     ) -> tuple[pa.Schema, Generator[pd.DataFrame]]:
    """The source's Arrow schema and its rows in batches of ``batch_rows``.

    The file is checked before any batch is read, as `parse_raw` checks it (empty,
    compressed, encoding, delimiter, header), in one pass of bounded memory; CSV fields
    stay text. Parquet integers and booleans come as pandas' nullable types, so a value
    reads the same in a batch with missing values as in one without. A name the header
    repeats is read once (the first copy) unless ``duplicate_columns`` is ``error``; with
    ``keep_identical`` each batch's copies are compared before it is handed out. Errors are
    one-line `InputError`s, raised by this call or, for a fault deep in the file, by the
    iterator.

    Args:
        stream: The source, opened for reading (seekable).
        fmt: ``"csv"`` or ``"parquet"``.
        file: The name used in error messages (the user's source path).
        batch_rows: Rows per batch.
        encoding: Text encoding for CSV.
        na_values: Strings read as missing in CSV.
        delimiter: The CSV field separator.
        expected_columns: How many columns the spec reads (as for `parse_raw`).
        duplicate_columns: ``error``, ``keep_first`` or ``keep_identical`` (see
            `repeated_columns`).
        read_columns: The columns the spec reads: with ``keep_identical`` only their
            copies must match (None: every repeated column's).
    """
    import pyarrow as pa

    prefix = stream.read(HEADER_PREFIX_BYTES)
    if not prefix.strip() and not stream.read(1):
        raise InputError(
            f"the file is empty ({len(prefix)} bytes{', all blank' if prefix else ''}); "
            "expected a header line and rows: re-export the data or point source.path at "
            "the right file", file=file, rule="not empty")
    _check_not_compressed(prefix, fmt, file)
    stream.seek(0)
    if fmt == "parquet":
        return _parquet_batches(stream, file, batch_rows, duplicate_columns, read_columns)
    _check_stream_encoding(stream, encoding, file)
    text = prefix.decode(encoding, errors="ignore")
    header_line = text.lstrip("\ufeff").split("\n", 1)[0]
    header = next(csv.reader(io.StringIO(header_line), delimiter=delimiter), [])
    _check_delimiter(header, header_line, delimiter, expected_columns, file)
    header = [h.strip() for h in header]
    repeats = repeated_columns(header, file, duplicate_columns, read_columns)
    stream.seek(0)
    names = _csv_columns(stream, encoding, delimiter, file)
    stream.seek(0)
    if repeats is not None:
        if len(names) != len(header):  # a header cell with a line break in its quotes
            raise InputError(
                f"the header line splits into {len(header)} names but the file into "
                f"{len(names)} columns, so repeated names cannot be matched to their "
                "columns; rename the repeats in the header", file=file, rule="unique header")
        names = [names[i] for i in repeats.keep]
    na = na_values if na_values is not None else [""]
    return (pa.schema([(n, pa.string()) for n in names]),
            _csv_batches(stream, file, batch_rows, encoding, delimiter, na, names, repeats))


def _csv_columns(stream: BinaryIO, encoding: str, delimiter: str, file: str) -> list[str]:
    """The column names pandas gives the file's batches.

    An empty header cell becomes ``Unnamed: <i>``; a header one name short of the rows'
    fields makes the first field the index.
    """
    import pandas as pd

    try:
        head = pd.read_csv(stream, encoding=encoding, sep=delimiter, dtype=str, nrows=1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(
            f"not a readable CSV file ({exc}); check the quoting of fields that contain "
            f"{delimiter!r} or line breaks", file=file, rule="csv format") from None
    return [str(c).strip() for c in head.columns]


def _csv_batches(stream: BinaryIO, file: str, batch_rows: int, encoding: str,
                 delimiter: str, na_values: list[str], names: list[str],
                 repeats: Repeats | None) -> Generator[pd.DataFrame]:
    """The file's rows in batches, named ``names`` (a repeated name's first copy only)."""
    import pandas as pd

    rows = 0
    try:
        reader = pd.read_csv(stream, encoding=encoding, sep=delimiter, dtype=str,
                             keep_default_na=False, na_values=na_values, chunksize=batch_rows)
        with reader:
            for frame in reader:
                if repeats is not None:
                    _check_identical(lambda p, f=frame: f.iloc[:, p], repeats, rows, file)
                    frame = frame.iloc[:, repeats.keep]
                frame.columns = names
                rows += len(frame)
                yield frame
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(
            f"not a readable CSV file ({exc}); check the quoting of fields that contain "
            f"{delimiter!r} or line breaks", file=file, rule="csv format") from None
    if not rows:
        raise InputError(
            f"the file has a header ({len(names)} columns) but no data rows; "
            "re-export the data with its rows", file=file, rule="not empty")


def nullable_types(typ: pa.DataType) -> Any:
    """The pandas nullable dtype for an Arrow integer or boolean type (else None)."""
    import pandas as pd
    import pyarrow as pa

    if pa.types.is_boolean(typ):
        return pd.BooleanDtype()
    if pa.types.is_integer(typ):
        return pd.api.types.pandas_dtype(str(typ).replace("u", "U").replace("i", "I", 1))
    return None


def _parquet_batches(stream: BinaryIO, file: str, batch_rows: int,
                     duplicate_columns: DuplicatePolicy = "error",
                     read_columns: Collection[str] | None = None
                     ) -> tuple[pa.Schema, Generator[pd.DataFrame]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def unreadable(exc: Exception) -> InputError:
        return InputError(
            f"not a readable Parquet file (truncated or corrupt?): {exc}; re-export it, or "
            "set source.format: csv if it is CSV text", file=file, rule="parquet format")

    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowInvalid, OSError) as exc:
        raise unreadable(exc) from None
    schema = parquet.schema_arrow
    # pandas' index columns (a frame saved with its index) are not data.
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", [])
             if isinstance(c, str)}
    # Fields by position: Arrow, unlike pandas, keeps a repeated name as it is.
    data = [i for i, name in enumerate(schema.names) if name not in index]
    columns = [schema.names[i] for i in data]
    repeats = repeated_columns(columns, file, duplicate_columns, read_columns)
    if repeats is not None:
        # Positions in the file's fields, for batches read whole and picked from.
        repeats = Repeats(keep=[data[i] for i in repeats.keep],
                          compare={n: [data[i] for i in at] for n, at in repeats.compare.items()})
    schema = pa.schema([schema.field(i) for i in (repeats.keep if repeats else data)])
    if not parquet.metadata.num_rows:
        raise InputError(
            f"the file has a header ({len(schema.names)} columns) but no data rows; "
            "re-export the data with its rows", file=file, rule="not empty")

    def batches() -> Generator[pd.DataFrame]:
        rows = 0
        try:
            if repeats is None:
                for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                    yield batch.to_pandas(types_mapper=nullable_types, ignore_metadata=True)
                return
            for batch in parquet.iter_batches(batch_size=batch_rows):
                _check_identical(
                    lambda p, b=batch: b.column(p).to_pandas(types_mapper=nullable_types),
                    repeats, rows, file)
                rows += batch.num_rows
                yield batch.select(repeats.keep).to_pandas(types_mapper=nullable_types,
                                                           ignore_metadata=True)
        except (pa.ArrowInvalid, OSError) as exc:
            raise unreadable(exc) from None

    return schema, batches()
