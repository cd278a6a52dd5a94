"""Stage results and how they become content-addressed artifacts in the store."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.hashing import hash_frame
from pipelines.store import ArtifactStore, Manifest

if TYPE_CHECKING:
    import pandas as pd


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
