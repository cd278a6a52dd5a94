"""Content hashing: BLAKE3 over canonical bytes.

Frames are hashed as a canonical *logical* encoding (column names, logical types and
values), never as file bytes: Parquet files embed writer versions and indexes, so two
files holding the same table can differ byte for byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import blake3

if TYPE_CHECKING:
    import pandas as pd

CHUNK = 8 * 1024 * 1024
HASH_PREFIX = "b3:"
# Frames are named by the hash of their logical content, not of their file bytes (Parquet
# embeds writer versions): a prefix of their own says how to check an object's name.
FRAME_PREFIX = "f3:"


def _digest(hasher: Any) -> str:
    return HASH_PREFIX + hasher.hexdigest()


def new_hasher() -> Any:
    """A BLAKE3 hasher using all cores for large inputs."""
    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def hash_bytes(data: bytes) -> str:
    """Hash a byte string."""
    h = new_hasher()
    h.update(data)
    return _digest(h)


def hash_stream(stream: BinaryIO) -> str:
    """Hash a binary stream in chunks without holding it in memory."""
    h = new_hasher()
    while chunk := stream.read(CHUNK):
        h.update(chunk)
    return _digest(h)


def hash_file(path: str | Path) -> str:
    """Hash a file's bytes."""
    with open(path, "rb") as f:
        return hash_stream(f)


def _normalise(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def canonical_json(value: Any) -> bytes:
    """Serialise to JSON with sorted keys and no whitespace, so equal values give equal bytes."""
    return json.dumps(
        _normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def hash_json(value: Any) -> str:
    """Hash a JSON-serialisable value through its canonical encoding."""
    return hash_bytes(canonical_json(value))


def _canonical_floats(values: Any) -> Any:
    """One bit pattern per value: every NaN alike, -0.0 as 0.0; copies only when needed."""
    import numpy as np

    values = np.ascontiguousarray(values)
    nan = np.isnan(values)
    if nan.any():
        values = np.where(nan, np.nan, values)
    ints = values.view(np.int32 if values.dtype == np.float32 else np.int64)
    if (ints == np.iinfo(ints.dtype).min).any():  # the bit pattern of -0.0
        values = values + 0.0
    return values


def hash_frame(frame: pd.DataFrame) -> str:
    """Hash a DataFrame by its logical content.

    The encoding covers column order, names, Arrow logical types, validity and values;
    it ignores the index and any file-format details. Floats are normalised so that
    -0.0 equals 0.0 and every NaN hashes alike.

    Args:
        frame: The frame to hash.

    Returns:
        The content hash, ``f3:<hex>``.
    """
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return hash_table(table)


def hash_table(table: Any) -> str:
    """Hash a ``pyarrow.Table`` by its logical content (see `hash_frame`)."""
    hasher = FrameHasher()
    hasher.update(table)
    return hasher.hexdigest()


class FrameHasher:
    """The logical hash of a table fed in batches (Arrow tables or record batches).

    The result is `hash_table` of the batches put together: each column's validity,
    lengths and values go to hashers of their own, fed chunk by chunk, so it does not
    depend on where the batches were cut. Every batch must have the first one's schema.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.schema: Any = None
        self._columns: list[tuple[Any, Any, Any, Any]] = []

    def update(self, batch: Any) -> None:
        import pyarrow as pa

        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        if self.schema is None:
            self.schema = batch.schema
            self._columns = [(new_hasher(), new_hasher(), new_hasher(), [False, 0])
                             for _ in batch.column_names]
        elif not batch.schema.equals(self.schema):
            raise ValueError(f"a batch's schema {batch.schema} differs from the first "
                             f"batch's {self.schema}")
        self.rows += batch.num_rows
        for column, hashers in zip(batch.columns, self._columns):
            _feed_column(column, hashers)

    def hexdigest(self) -> str:
        if self.schema is None:
            raise ValueError("nothing was hashed: no batch, not even an empty one")
        h = new_hasher()
        h.update(canonical_json({"rows": self.rows, "columns": self.schema.names}))
        for field, (validity, lengths, values_h, _) in zip(self.schema, self._columns):
            h.update(canonical_json({"name": field.name, "type": str(field.type)}))
            h.update(validity.digest())
            h.update(lengths.digest())
            h.update(values_h.digest())
        return FRAME_PREFIX + h.hexdigest()


def _feed_column(column: Any, hashers: tuple[Any, Any, Any, Any]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    validity, lengths, values_h, nulls = hashers
    for chunk in column.chunks:
        # Validity counts only for a column with a missing value somewhere: until the
        # first one, the all-valid rows are counted, and fed when it comes.
        if chunk.null_count and not nulls[0]:
            nulls[0] = True
            _feed_valid(validity, nulls[1])
        if nulls[0]:
            validity.update(np.asarray(chunk.is_valid()).tobytes())
        else:
            nulls[1] += len(chunk)
        typ = chunk.type
        if pa.types.is_temporal(typ):  # dates, times, timestamps: hashed as their integers
            chunk = chunk.cast(pa.int64() if typ.bit_width == 64 else pa.int32())
            typ = chunk.type
        if pa.types.is_floating(typ):
            values = _canonical_floats(chunk.to_numpy(zero_copy_only=False))
            values_h.update(memoryview(values).cast("B"))
        elif pa.types.is_integer(typ) or pa.types.is_boolean(typ):
            fill = False if pa.types.is_boolean(typ) else pa.scalar(0, typ)
            filled = pc.fill_null(chunk, fill) if chunk.null_count else chunk
            values = np.ascontiguousarray(filled.to_numpy(zero_copy_only=False))
            values_h.update(memoryview(values).cast("B"))
        elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
            arr = pc.fill_null(chunk, "").cast(pa.large_string())
            offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
                arr.offset : arr.offset + len(arr) + 1
            ]
            lengths.update(np.diff(offsets).tobytes())  # lengths, not offsets
            data = arr.buffers()[2]
            if data is not None:
                values_h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
        else:
            values_h.update(canonical_json(chunk.to_pylist()))


def _feed_valid(hasher: Any, rows: int, step: int = 1 << 24) -> None:
    """Feed ``rows`` validity bytes of 1 (valid), a bounded piece at a time."""
    import numpy as np

    ones = np.ones(min(rows, step), dtype=bool).tobytes()
    while rows > 0:
        hasher.update(ones[:min(rows, step)])
        rows -= step
