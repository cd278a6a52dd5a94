"""Stage results and how they become content-addressed artifacts in the store."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.hashing import FrameHasher, hash_frame
from pipelines.store import ArtifactStore, Manifest

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class StageFailure(Exception):
    """A stage refused its input; carries the check outcomes to report before failing."""

    def __init__(self, message: str, checks: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.checks = checks or []


@dataclass(frozen=True)
class Markdown:
    """A metadata value shown as Markdown (a table, a card)."""

    text: str


@dataclass(frozen=True)
class PathLink:
    """A metadata value that is a link to a file (a local path or a URL)."""

    url: str


# How the markers are written in the JSON of a memo entry (and read back on a cache hit).
_MARKERS: dict[str, type[Markdown] | type[PathLink]] = {"__md__": Markdown, "__path__": PathLink}


def metadata_to_json(metadata: dict[str, Any]) -> dict[str, Any]:
    """Stage metadata as stored in a memo entry: markers become ``{"__md__": text}`` etc."""
    def encode(value: Any) -> Any:
        if isinstance(value, Markdown):
            return {"__md__": value.text}
        if isinstance(value, PathLink):
            return {"__path__": value.url}
        return value

    return {name: encode(value) for name, value in metadata.items()}


def metadata_from_json(metadata: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`metadata_to_json` (memo entries written before it included)."""
    def decode(value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            (tag, payload), = value.items()
            if tag in _MARKERS and isinstance(payload, str):
                return _MARKERS[tag](payload)
        return value

    return {name: decode(value) for name, value in metadata.items()}


@dataclass
class StageResult:
    """What a stage computed.

    ``files``, ``frames``, ``stored`` and ``info`` make up the artifact's content (and so its
    hash); ``metadata`` and ``checks`` are shown in the UI and kept with the memo entry.
    Metadata values are plain JSON values, :class:`Markdown` or :class:`PathLink`.
    """

    kind: str
    files: dict[str, bytes] = field(default_factory=dict)
    frames: dict[str, Any] = field(default_factory=dict)
    stored: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SpooledFrame:
    """A frame written batch by batch to a temp file (`FrameWriter`), with its hash."""

    path: Path
    content_hash: str
    rows: int


class FrameWriter:
    """Writes a frame to a Parquet temp file batch by batch, hashing it on the way.

    Every batch is converted to the one ``schema``, so the file and its logical hash are
    the same however the rows were cut into batches (one batch or many). Leaving the
    ``with`` block by an exception removes the temp file.
    """

    def __init__(self, store: ArtifactStore, schema: pa.Schema):
        import pyarrow.parquet as pq

        self.schema = schema
        self.path = store.spool_path()
        self.hasher = FrameHasher()
        self.hasher.update(schema.empty_table())
        self._writer = pq.ParquetWriter(self.path, schema)

    def write(self, frame: pd.DataFrame | pa.Table) -> None:
        import pyarrow as pa

        if isinstance(frame, pa.Table):
            table = frame.select(self.schema.names).cast(self.schema)
        else:
            frame = frame[self.schema.names]
            try:
                table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # Values of another type than the schema's (integers kept as text):
                # converted as they are, then cast, which fails only on a lossy cast.
                table = pa.Table.from_pandas(frame, preserve_index=False).cast(self.schema)
        if table.num_rows:
            self.hasher.update(table)
            self._writer.write_table(table)

    def close(self) -> SpooledFrame:
        self._writer.close()
        return SpooledFrame(self.path, self.hasher.hexdigest(), self.hasher.rows)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is not None:
            self._writer.close()
            self.path.unlink(missing_ok=True)


def frame_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def save_result(store: ArtifactStore, result: StageResult) -> Manifest:
    """Store every file, then the manifest; returns the manifest (its hash is the content)."""
    files = dict(result.stored)
    for name, data in result.files.items():
        files[name] = store.put_bytes(data)
    for name, frame in result.frames.items():
        if isinstance(frame, SpooledFrame):
            files[name] = store.put_file(frame.path, frame.content_hash)
        else:
            files[name] = store.put_bytes(frame_bytes(frame), content_hash=hash_frame(frame))
    manifest = Manifest(kind=result.kind, files=dict(sorted(files.items())), info=result.info)
    store.put_manifest(manifest)
    return manifest


def read_file(store: ArtifactStore, manifest: Manifest, name: str) -> bytes:
    return store.get_bytes(manifest.files[name])


def read_json(store: ArtifactStore, manifest: Manifest, name: str) -> Any:
    return json.loads(read_file(store, manifest, name))


def read_frame(store: ArtifactStore, manifest: Manifest, name: str, *,
               columns: list[str] | None = None) -> pd.DataFrame:
    """A stored frame (only its ``columns`` when given)."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(read_file(store, manifest, name)), columns=columns)


def read_splits(store: ArtifactStore, manifest: Manifest, name: str, splits: tuple[str, ...],
                *, by: str, columns: list[str] | None = None) -> tuple[pd.DataFrame, ...]:
    """One frame per value of ``splits``: the rows whose column ``by`` holds it.

    The file is fetched once; each split is read from the Parquet file on its own, in
    stored order, so the rows of no other split enter memory.
    """
    import pandas as pd

    data = read_file(store, manifest, name)
    return tuple(pd.read_parquet(io.BytesIO(data), columns=columns, filters=[(by, "==", split)])
                 for split in splits)


def iter_frame(store: ArtifactStore, manifest: Manifest, name: str, *, batch_rows: int,
               columns: list[str] | None = None, where: tuple[str, str] | None = None,
               categories: bool = False) -> Iterator[pd.DataFrame]:
    """A stored frame in batches of at most ``batch_rows`` rows, in stored order.

    Args:
        store: The artifact store.
        manifest: The manifest that names the frame.
        name: The frame's name in the manifest.
        batch_rows: Rows per batch.
        columns: Only these columns.
        where: ``(column, value)``: only the rows whose column holds the value (the
            column is read for the filter, and returned only when asked for).
        categories: Text columns as pandas categoricals (each distinct string held once).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with open_object(store, manifest.files[name]) as source:
        parquet = pq.ParquetFile(source)
        read = None if columns is None else list(dict.fromkeys(
            [*columns, *([where[0]] if where else [])]))
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=read):
            table = pa.Table.from_batches([batch])
            if where is not None:
                table = table.filter(pc.equal(table[where[0]], where[1]))
                if columns is not None and where[0] not in columns:
                    table = table.drop_columns([where[0]])
            if categories:
                table = _dictionary_text(table)
            yield table.to_pandas()


def _dictionary_text(table: pa.Table) -> pa.Table:
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            table = table.set_column(i, f.name, table.column(i).dictionary_encode())
    return table


def open_object(store: ArtifactStore, content_hash: str) -> Any:
    """An object opened for reading: the file itself in a local store."""
    return open(store.local_path(content_hash), "rb") if store.local else store.open(
        content_hash)
