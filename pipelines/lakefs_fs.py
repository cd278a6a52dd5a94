"""``lakefs://<repo>/<branch>/<path>`` as an fsspec filesystem over the ``lakefs`` SDK.

Registered by `pipelines.lakefs.register_filesystem` when a store root uses it.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractFileSystem

from pipelines.lakefs import SCHEME, LakeFSError, LakeFSPath, make_client, not_found


class LakeFSFileSystem(AbstractFileSystem):
    """An fsspec filesystem over the ``lakefs`` SDK: ``lakefs://<repo>/<branch>/<path>``.

    Writes go to the branch's staging area; one upload is all-or-nothing, so the store
    writes objects in place (``atomic_writes``) instead of via a temporary name, and
    ``pipe_file(..., mode="create")`` is a conditional upload (``If-None-Match: *``)
    that at most one writer wins, across machines.
    """

    protocol = ("lakefs",)
    root_marker = ""
    cachable = False  # each instance reads the connection settings when it is made
    atomic_writes = True

    def __init__(self, endpoint: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.client = make_client(endpoint, access_key_id, secret_access_key)

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = str(path)
        if path.startswith(SCHEME):
            path = path[len(SCHEME):]
        return path.rstrip("/")

    def unstrip_protocol(self, name: str) -> str:
        return SCHEME + self._strip_protocol(name)

    def _loc(self, path: str) -> LakeFSPath:
        return LakeFSPath.parse(SCHEME + self._strip_protocol(path))

    def _object(self, path: str) -> Any:
        import lakefs

        loc = self._loc(path)
        return lakefs.WriteableObject(loc.repo, loc.ref, loc.path, client=self.client)

    def _entry(self, loc: LakeFSPath, item: Any) -> dict[str, Any]:
        from lakefs import CommonPrefix

        name = f"{loc.repo}/{loc.ref}/{item.path.rstrip('/')}"
        if isinstance(item, CommonPrefix):
            return {"name": name, "size": 0, "type": "directory"}
        return {"name": name, "size": item.size_bytes, "type": "file",
                "checksum": item.checksum, "mtime": item.mtime}

    def _listing(self, path: str, delimiter: str) -> list[dict[str, Any]]:
        import lakefs

        loc = self._loc(path)
        prefix = f"{loc.path}/" if loc.path else ""
        ref = lakefs.Reference(loc.repo, loc.ref, client=self.client)
        try:
            return [self._entry(loc, item)
                    for item in ref.objects(prefix=prefix, delimiter=delimiter)]
        except Exception as exc:
            if not_found(exc):
                raise FileNotFoundError(path) from exc
            raise

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        loc = self._loc(path)
        if loc.path:
            try:
                stat = self._object(path).stat()
                return self._entry(loc, stat)
            except Exception as exc:
                if not not_found(exc):
                    raise
        if self._listing(path, "/"):
            return {"name": self._strip_protocol(path), "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entries = self._listing(path, "/")
        if not entries:
            info = self.info(path)  # a file lists as itself; nothing at all is an error
            entries = [info]
        return entries if detail else [e["name"] for e in entries]

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False,
             detail: bool = False, **kwargs: Any) -> Any:
        try:
            files = {e["name"]: e for e in self._listing(path, "")}
        except FileNotFoundError:
            files = {}
        return files if detail else sorted(files)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        try:
            with self._object(path).reader(mode="rb", pre_sign=False) as reader:
                if start:
                    reader.seek(start)
                data = reader.read(None if end is None else end - (start or 0))
        except Exception as exc:
            if not_found(exc):
                raise FileNotFoundError(path) from exc
            raise
        return bytes(data)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite",
                  **kwargs: Any) -> None:
        from lakefs.exceptions import ObjectExistsException

        try:
            self._object(path).upload(value, mode="xb" if mode == "create" else "wb",
                                      pre_sign=False)
        except ObjectExistsException as exc:
            raise FileExistsError(path) from exc

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        obj = self._object(path)
        if "r" in mode:
            if not self.exists(path):
                raise FileNotFoundError(path)
            return obj.reader(mode="rb", pre_sign=False)
        return obj.writer(mode="wb", pre_sign=False)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        src, dst = self._loc(path1), self._loc(path2)
        if (src.repo, src.ref) != (dst.repo, dst.ref):
            raise LakeFSError("copies within one branch only")
        self._object(path1).copy(dst.ref, dst.path)

    def rm_file(self, path: str) -> None:
        try:
            self._object(path).delete()
        except Exception as exc:
            if not_found(exc):
                raise FileNotFoundError(path) from exc
            raise

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        for p in [path] if isinstance(path, str) else list(path):
            if recursive and self.isdir(p):
                for f in self.find(p):
                    self.rm_file(f)
            else:
                self.rm_file(p)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Folders are implied by object paths."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Folders are implied by object paths."""

    def created(self, path: str) -> Any:
        import datetime

        return datetime.datetime.fromtimestamp(self.info(path)["mtime"], datetime.UTC)

    modified = created
