"""Raw data: observe the source cheaply, snapshot it, and parse it with clear errors."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.hashing import hash_file

if TYPE_CHECKING:
    import pandas as pd


class InputError(ValueError):
    """Bad input, described by the file, column and rule at fault and what to do."""

    def __init__(self, message: str, *, file: str, column: str | None = None, rule: str):
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


def local_source_path(uri: str) -> Path:
    """The local path of a source URI (plain path or ``file://``), checked to exist."""
    path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if not path.exists():
        raise InputError(
            "the source file does not exist; check source.path in the dataset spec"
            " (for the demo data run `make demo`)",
            file=str(path),
            rule="source exists",
        )
    return path


def _check_header(names: list[str], file: str) -> None:
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise InputError(
            f"duplicate column names {dupes}; every column must be named once",
            file=file,
            column=dupes[0],
            rule="unique header",
        )


def _read_csv(data: bytes, encoding: str, na_values: list[str], file: str) -> pd.DataFrame:
    import pandas as pd

    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"byte {exc.start} (line {line}) is not valid {encoding}; re-save the file as"
            f" {encoding} or set source.encoding in the spec",
            file=file,
            rule="encoding",
        ) from exc
    header = next(csv.reader(io.StringIO(text)), [])
    _check_header([h.strip() for h in header], file)
    try:
        frame = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_values=na_values
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"not a readable CSV file: {exc}", file=file, rule="csv format") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_parquet(data: bytes, file: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(
            f"not a readable Parquet file (truncated or corrupt?): {exc}",
            file=file,
            rule="parquet format",
        ) from exc
    _check_header(table.column_names, file)
    return table.to_pandas()


def parse_raw(data: bytes, *, fmt: str, file: str, encoding: str = "utf-8",
              na_values: list[str] | None = None) -> pd.DataFrame:
    """Parse raw bytes into a frame, failing with a clear `InputError`.

    Args:
        data: The raw file bytes.
        fmt: ``"csv"`` or ``"parquet"``.
        file: The name used in error messages (the user's source path).
        encoding: Text encoding for CSV.
        na_values: Strings read as missing in CSV.
    """
    if not data.strip():
        raise InputError("the file is empty; expected a header and rows", file=file,
                         rule="not empty")
    if fmt == "parquet":
        frame = _read_parquet(data, file)
    else:
        frame = _read_csv(data, encoding, na_values if na_values is not None else [""], file)
    if frame.empty:
        raise InputError("the file has a header but no rows", file=file, rule="not empty")
    return frame

