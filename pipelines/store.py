"""Content-addressed artifact store over fsspec.

Layout under the root::

    objects/<2 hex>/<hash>          immutable content, named by its hash
    keys/<asset>/<recipe key>.json  memo table: recipe key -> result record

Every write goes to a temporary name and is renamed into place, and a result record
(the pointer) is written only after all the content it names, so a crash at any
moment leaves either no visible artifact or a complete one.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pipelines.hashing import CHUNK, HASH_PREFIX, canonical_json, hash_bytes, new_hasher
from pipelines.lakefs import is_lakefs, register_filesystem, spooled_copy


def object_hash(name: str) -> str:
    """The content hash an object file's name stands for (``b3:…`` or ``f3:…``)."""
    prefix, _, digest = name.rpartition("-")
    return f"{prefix}:{digest}" if prefix else HASH_PREFIX + name


def is_temp(path: str) -> bool:
    """Whether a store path is a write's temp file (``.tmp-<id>`` or ``<name>.tmp-<id>``)."""
    return ".tmp-" in path.rsplit("/", 1)[-1]


class ArtifactNotFound(KeyError):
    """Raised when a hash or recipe key has no stored artifact."""


@dataclass(frozen=True)
class Manifest:
    """An artifact made of named files, each stored by content hash.

    The artifact's content hash is the hash of this manifest's canonical JSON, so it
    changes exactly when a file's content or the deterministic ``info`` changes.
    """

    kind: str
    files: dict[str, str]
    info: dict[str, Any]

    def to_bytes(self) -> bytes:
        return canonical_json({"kind": self.kind, "files": self.files, "info": self.info})

    @property
    def content_hash(self) -> str:
        return hash_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        return cls(kind=raw["kind"], files=raw["files"], info=raw["info"])


class ArtifactStore:
    """A content-addressed store rooted at a local folder or an fsspec URL."""

    def __init__(self, root: str | Path):
        import fsspec

        self.root = str(root).rstrip("/")
        if is_lakefs(self.root):
            register_filesystem()
        # Other processes and machines write the same store: a cached listing would hide
        # their entries (s3fs caches listings per instance unless told not to).
        remote = "://" in self.root and not self.root.startswith("file://")
        self.fs, self._base = fsspec.core.url_to_fs(
            self.root, **({"use_listings_cache": False} if remote else {}))
        self.local = self.fs.protocol in ("file", "local") or "file" in self.fs.protocol
        # A backend whose single upload is all-or-nothing (lakeFS) needs no temp + rename.
        self.atomic_puts = bool(getattr(self.fs, "atomic_writes", False))

    # -- paths -------------------------------------------------------------------------
    def _object_path(self, content_hash: str) -> str:
        prefix, _, digest = content_hash.rpartition(":")
        # Byte-addressed objects are named by their digest alone; frames (named by their
        # logical hash) carry their prefix, so `make verify` knows how to check each name.
        name = digest if prefix in ("", HASH_PREFIX[:-1]) else f"{prefix}-{digest}"
        return f"{self._base}/objects/{digest[:2]}/{name}"

    def _key_path(self, asset: str, recipe_key: str) -> str:
        digest = recipe_key.split(":", 1)[-1]
        return f"{self._base}/keys/{asset}/{digest}.json"

    def object_url(self, content_hash: str) -> str:
        """Where an object lives (a local path or a URL), for people to open."""
        path = self._object_path(content_hash)
        return path if self.local else self.fs.unstrip_protocol(path)

    def local_path(self, content_hash: str) -> Path:
        """The on-disk path of an object (local stores only)."""
        if not self.local:
            raise ValueError(f"store {self.root} is not local")
        path = Path(self._object_path(content_hash))
        if not path.exists():
            raise ArtifactNotFound(content_hash)
        return path

    # -- atomic writes ---------------------------------------------------------------------
    def _atomic_write(self, path: str, data: bytes) -> None:
        if self.atomic_puts:
            self.fs.pipe_file(path, data)
            return
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        if self.local:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)

    def has(self, content_hash: str) -> bool:
        return bool(self.fs.exists(self._object_path(content_hash)))

    def put_bytes(self, data: bytes, content_hash: str | None = None) -> str:
        """Store bytes under their BLAKE3 hash (or a given logical hash); returns the hash."""
        content_hash = content_hash or hash_bytes(data)
        path = self._object_path(content_hash)
        if not self.fs.exists(path):
            self._atomic_write(path, data)
        return content_hash

    def put_stream(self, stream: BinaryIO, content_hash: str | None = None) -> str:
        """Copy a stream into the store, hashing the bytes as they are copied.

        With ``content_hash`` (a frame's logical hash), the object is named by it instead.
        """
        hasher = new_hasher()
        if self.atomic_puts:
            with spooled_copy(stream, hasher, CHUNK) as spool:
                content_hash = content_hash or HASH_PREFIX + hasher.hexdigest()
                path = self._object_path(content_hash)
                if not self.fs.exists(path):
                    with self.fs.open(path, "wb") as out:
                        while chunk := spool.read(CHUNK):
                            out.write(chunk)
            return content_hash
        tmp_dir = f"{self._base}/objects/tmp"
        self.fs.makedirs(tmp_dir, exist_ok=True)
        tmp = f"{tmp_dir}/.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as out:
            while chunk := stream.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
        content_hash = content_hash or HASH_PREFIX + hasher.hexdigest()
        path = self._object_path(content_hash)
        if self.fs.exists(path):
            self.fs.rm(tmp)
        else:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(tmp, path)
        return content_hash

    def spool_path(self) -> Path:
        """A fresh temp file name for a large write to build before `put_file` stores it.

        In the store's temp folder for a local store (so the move is a rename and a
        cut-off write leaves a temp file that `make gc` removes), else in the system's.
        """
        import tempfile

        name = f".tmp-{uuid.uuid4().hex}"
        if self.local:
            folder = Path(self._base, "objects", "tmp")
            folder.mkdir(parents=True, exist_ok=True)
            return folder / name
        return Path(tempfile.gettempdir(), name)

    def put_file(self, path: Path, content_hash: str) -> str:
        """Store a finished file under ``content_hash``, consuming the file."""
        target = self._object_path(content_hash)
        if self.fs.exists(target):
            path.unlink()
        elif self.local:
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        else:
            with open(path, "rb") as f:
                self.put_stream(f, content_hash)
            path.unlink()
        return content_hash

    def get_bytes(self, content_hash: str) -> bytes:
        path = self._object_path(content_hash)
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError as exc:
            raise ArtifactNotFound(content_hash) from exc

    def open(self, content_hash: str) -> BinaryIO:
        path = self._object_path(content_hash)
        if not self.fs.exists(path):
            raise ArtifactNotFound(content_hash)
        return self.fs.open(path, "rb")

    # -- manifests ----------------------------------------------------------------------
    def put_manifest(self, manifest: Manifest) -> str:
        """Store a manifest (its files must already be stored); returns its content hash."""
        missing = [name for name, h in manifest.files.items() if not self.has(h)]
        if missing:
            raise ArtifactNotFound(f"manifest names files not in the store: {missing}")
        return self.put_bytes(manifest.to_bytes())

    def get_manifest(self, content_hash: str) -> Manifest:
        return Manifest.from_bytes(self.get_bytes(content_hash))

    # -- memo table -----------------------------------------------------------------------
    def lookup(self, asset: str, recipe_key: str) -> dict[str, Any] | None:
        """The stored result record for a recipe key, or None on a miss.

        A record whose content is missing from the store counts as a miss.
        """
        path = self._key_path(asset, recipe_key)
        try:
            record = json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        if not self.has(record["content_hash"]):
            return None
        return record

    def record(self, asset: str, recipe_key: str, record: dict[str, Any]) -> None:
        """Write the pointer for a recipe key: last, after the content it names."""
        if not self.has(record["content_hash"]):
            raise ArtifactNotFound(record["content_hash"])
        self._write_pointer(self._key_path(asset, recipe_key), canonical_json(record))

    def _write_pointer(self, path: str, data: bytes) -> None:
        self._atomic_write(path, data)

    # -- small mutable records (aliases, logs) ----------------------------------------------
    def read_record(self, name: str) -> dict[str, Any] | None:
        """A named JSON record under ``records/``, or None if absent."""
        try:
            return json.loads(self.fs.cat_file(f"{self._base}/records/{name}.json"))
        except FileNotFoundError:
            return None

    def write_record(self, name: str, record: dict[str, Any]) -> None:
        """Replace a named JSON record atomically."""
        self._atomic_write(f"{self._base}/records/{name}.json", canonical_json(record))

    def create_record(self, name: str, record: dict[str, Any]) -> None:
        """Write a named JSON record that must not exist yet (entries of append-only logs).

        Raises:
            FileExistsError: the name is taken; nothing is overwritten.
        """
        path = f"{self._base}/records/{name}.json"
        if self.local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(canonical_json(record))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if the name exists, unlike a rename
            finally:
                os.unlink(tmp)
            return
        # A conditional write (If-None-Match: *; s3fs and lakeFS raise FileExistsError
        # when it fails): of two writers, on any machines, exactly one wins.
        self.fs.pipe_file(path, canonical_json(record), mode="create")

    def list_records(self, prefix: str) -> list[str]:
        """Names of the records under ``records/<prefix>/``, sorted."""
        base = f"{self._base}/records/{prefix}"
        try:
            paths = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        names = [p.rsplit("/", 1)[-1] for p in paths]
        return sorted(f"{prefix}/{n[:-5]}" for n in names if n.endswith(".json"))

    # -- listing, for garbage collection ------------------------------------------------------
    def object_files(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        """``(path, content hash or None for a leftover temp file, fs info)`` of every object."""
        out = []
        for path, info in self.fs.find(f"{self._base}/objects", detail=True).items():
            name = path.rsplit("/", 1)[-1]
            out.append((path, None if is_temp(path) else object_hash(name), info))
        return out

    def memo_files(self) -> list[str]:
        return [p for p in self.fs.find(f"{self._base}/keys") if not is_temp(p)]

    def temp_files(self) -> list[tuple[str, dict[str, Any]]]:
        """``(path, fs info)`` of every temp file a cut-off write left in the store.

        Writes go to a temp name first; a process killed before its rename leaves one.
        They are never read, so they are harmless, but they take space until `make gc`.
        """
        out = []
        for folder in ("objects", "keys", "records"):
            found = self.fs.find(f"{self._base}/{folder}", detail=True)
            out += [(path, info) for path, info in found.items() if is_temp(path)]
        return sorted(out)

    def record_folders(self, prefix: str) -> list[str]:
        """Names of the folders under ``records/<prefix>/``."""
        try:
            entries = self.fs.ls(f"{self._base}/records/{prefix}", detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rsplit("/", 1)[-1] for e in entries if e["type"] == "directory")

    def remove(self, path: str) -> None:
        self.fs.rm(path)

    def lock_path(self, name: str) -> Path:
        """A local file to lock for ``name``: in the store for a local store, else per machine.

        An object store has no locks, so writers on different machines are not queued;
        what keeps them safe is that history entries are created with a conditional write
        (`create_record`): of two that race for the same entry, one fails and retries,
        nothing is overwritten.
        """
        import hashlib
        import tempfile

        if self.local:
            path = Path(self._base, "locks", f"{name.replace('/', '__')}.lock")
        else:
            digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
            path = Path(tempfile.gettempdir(), "tideline-locks", digest,
                        f"{name.replace('/', '__')}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
